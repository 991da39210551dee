"""Pure types of the Stash v1beta1 / v1alpha1 API: CRD models, constants, CRD schema generation.

Nothing in this package performs I/O or imports from another package of the project.
"""
