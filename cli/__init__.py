"""Composition roots: the ``stash`` console script, argument parsing and wiring."""
