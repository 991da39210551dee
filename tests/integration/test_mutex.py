"""The Lease mutex against the real API server: a Lease whose holder's pod is gone, or that an
earlier container of the waiter's own pod left, is taken over at once; one whose holder lives
is waited for; one the waiter cannot judge waits out its ttl."""

from __future__ import annotations

import threading
import time

import pytest

from kube import Client
from kube.leader import micro_time
from kube.mutex import LeaseMutex, pod_gone, pod_holder
from kube.types import LEASES


def _held_by(kube: Client, namespace: str, holder: str) -> None:
    stamp = micro_time()
    kube.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "init"},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 120,
                "acquireTime": stamp,
                "renewTime": stamp,
            },
        },
        namespace,
    )


def _pod(kube: Client, namespace: str, name: str) -> None:
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "probe"}]},
        },
        namespace,
    )


def test_a_lease_whose_holders_pod_is_gone_is_taken_over_at_once(
    kube: Client, namespace: str
) -> None:
    _held_by(kube, namespace, pod_holder(namespace, "web-0"))  # its pod died: never made here
    started = time.monotonic()
    me = pod_holder(namespace, "web-1")
    mutex = LeaseMutex(kube, namespace, "init", me, holder_gone=pod_gone(kube, namespace))
    with mutex:
        lease = kube.get(LEASES, "init", namespace)
        assert lease["spec"]["holderIdentity"] == me
    assert time.monotonic() - started < 30  # not the 120 s ttl
    assert not kube.list(LEASES, namespace)["items"]  # left: deleted


def test_a_lease_whose_holders_pod_lives_is_waited_for(kube: Client, namespace: str) -> None:
    _pod(kube, namespace, "web-0")
    _held_by(kube, namespace, pod_holder(namespace, "web-0"))
    mutex = LeaseMutex(
        kube,
        namespace,
        "init",
        pod_holder(namespace, "web-1"),
        timeout=3,
        holder_gone=pod_gone(kube, namespace),
    )
    with pytest.raises(TimeoutError), mutex:
        pass
    lease = kube.get(LEASES, "init", namespace)
    assert lease["spec"]["holderIdentity"] == pod_holder(namespace, "web-0")


def test_a_lease_an_earlier_container_of_the_same_pod_left_is_taken_over_at_once(
    kube: Client, namespace: str
) -> None:
    """The sidecar restarted in a pod that lives: the Lease in its pod's name is its own."""
    _pod(kube, namespace, "web-0")
    me = pod_holder(namespace, "web-0")
    _held_by(kube, namespace, me)
    started = time.monotonic()
    with LeaseMutex(kube, namespace, "init", me, holder_gone=pod_gone(kube, namespace)):
        assert kube.get(LEASES, "init", namespace)["spec"]["holderIdentity"] == me
    assert time.monotonic() - started < 30  # not the 120 s ttl
    # a name that is not a pod's is not judged so (a process outside a pod waits)
    _held_by(kube, namespace, "Deployment/web host host-0")
    with (
        pytest.raises(TimeoutError),
        LeaseMutex(kube, namespace, "init", "Deployment/web host host-0", timeout=2),
    ):
        pass


def _lease_creates(kube: Client) -> float:
    """The API server's own count of Lease creations (POST leases), all namespaces."""
    text = kube.request("GET", "/metrics", accept="text/plain", raw=True).decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
        and 'resource="leases"' in line
        and 'verb="POST"' in line
    )


def test_a_waiter_watches_the_held_lease_and_takes_it_when_released(
    kube: Client, namespace: str
) -> None:
    """Not a create attempt every backoff step: a watch, and one attempt once it goes."""
    _pod(kube, namespace, "web-0")
    _held_by(kube, namespace, pod_holder(namespace, "web-0"))
    before = _lease_creates(kube)
    release_at = time.monotonic() + 6

    def release() -> None:
        time.sleep(max(0.0, release_at - time.monotonic()))
        kube.delete(LEASES, "init", namespace)

    releaser = threading.Thread(target=release)
    releaser.start()
    me = pod_holder(namespace, "web-1")
    with LeaseMutex(kube, namespace, "init", me, holder_gone=pod_gone(kube, namespace)):
        taken = time.monotonic()
        assert kube.get(LEASES, "init", namespace)["spec"]["holderIdentity"] == me
    releaser.join()
    assert taken - release_at < 1.0  # as it was released, not at the next backoff step
    # its first attempt and the one after the release (a 2 s backoff would make four more)
    assert _lease_creates(kube) - before <= 3


def test_a_holder_in_another_namespace_or_not_a_pod_is_never_judged_gone(
    kube: Client, namespace: str
) -> None:
    gone = pod_gone(kube, namespace)
    assert not gone(pod_holder("elsewhere", "web-0"))  # its pods are not ours to read
    assert not gone("Deployment/web host host-0")  # an identity that names no pod
    assert gone(pod_holder(namespace, "never-made"))
    _pod(kube, namespace, "alive")
    assert not gone(pod_holder(namespace, "alive"))
