"""What the webhook and the operator put into pods: the ``stash`` sidecar and the ``stash-init``
container (``sidecar``), which invoker members each workload's injected containers carry out
(``invokers``), and the volumes they add (``volumes``)."""
