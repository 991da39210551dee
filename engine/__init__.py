"""What a backup needs, independent of who runs it: which invokers target a workload, the
``stash`` sidecar built for them (and its hash), and, in later milestones, restic and metrics."""
