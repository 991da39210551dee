"""The operator's own metrics, named as controller-runtime names them, so dashboards and alerts
written for Go operators work unchanged: per controller its reconciles by result, errors, time
per reconcile and busy workers; per work queue its depth, adds, retries, how long keys wait and
are worked on, and how long the oldest running one has been; and whether this replica leads.
One registry per operator (tests run several in one process), served on ``/metrics`` of the
health port."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# controller-runtime's buckets for reconcile time and the work queue's (client-go's) for waits
RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
    0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30,
    40, 50, 60,
)  # fmt: skip
QUEUE_BUCKETS = tuple(10.0**exp for exp in range(-8, 2))


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._controllers(self.registry)
        self._queues(self.registry)
        self.leader = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master",
            ["name"],
            registry=self.registry,
        )

    def _controllers(self, r: CollectorRegistry) -> None:
        """Per controller: reconciles by result, errors, time per reconcile, workers."""
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            ["controller"],
            registry=r,
        )
        self.terminal_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller",
            ["controller"],
            registry=r,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ["controller"],
            registry=r,
        )
        self.max_workers = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ["controller"],
            registry=r,
        )

    def _queues(self, r: CollectorRegistry) -> None:
        """Per work queue: depth, adds, retries, waits, work time, work in progress."""
        labels = ["controller", "name"]
        self.depth = Gauge("workqueue_depth", "Current depth of workqueue", labels, registry=r)
        self.adds = Counter(
            "workqueue_adds_total", "Total number of adds handled by workqueue", labels, registry=r
        )
        self.retries = Counter(
            "workqueue_retries_total",
            "Total number of retries handled by workqueue",
            labels,
            registry=r,
        )
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            labels,
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            labels,
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.unfinished = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress",
            labels,
            registry=r,
        )
        self.longest = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
            labels,
            registry=r,
        )

    def queue(
        self, controller: str, depth: Callable[[], int], running: Callable[[], list[float]]
    ) -> QueueMetrics:
        """The observer of one controller's work queue; its depth and running work are read
        when scraped."""
        labels = {"controller": controller, "name": controller}
        self.depth.labels(**labels).set_function(depth)
        self.unfinished.labels(**labels).set_function(lambda: sum(running()))
        self.longest.labels(**labels).set_function(lambda: max(running(), default=0.0))
        return QueueMetrics(self, labels)


class QueueMetrics:
    """A work queue's observer (``controller.runtime.queue.QueueObserver``)."""

    def __init__(self, metrics: RuntimeMetrics, labels: dict[str, str]) -> None:
        self._adds = metrics.adds.labels(**labels)
        self._retries = metrics.retries.labels(**labels)
        self._waits = metrics.queue_duration.labels(**labels)
        self._works = metrics.work_duration.labels(**labels)

    def added(self) -> None:
        self._adds.inc()

    def waited(self, seconds: float) -> None:
        self._waits.observe(seconds)

    def worked(self, seconds: float) -> None:
        self._works.observe(seconds)

    def retried(self) -> None:
        self._retries.inc()
