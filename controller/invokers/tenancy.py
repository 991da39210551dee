"""The tenant boundary as the operator reads it: the Namespaces in play, from the cache, and
each invoker's members and Repository as one ``api.tenancy.Subject``.

The rules themselves are ``api.tenancy`` (shared with the webhook); this module only gathers
what they judge, on every pass: the invoker and restore reconcilers read the tenancy here
(through ``controller.invokers.facts``) and judge it in
``controller.invokers.evaluation.boundary_refusals``; the session reconciler asks
``judge_boundary``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from api.objects import JSON
from api.repository import Repository
from api.tenancy import NamespacePolicy, Refusal, Subject, Tenancy, refusals
from controller.invokers.evaluation import MemberRef, namespaces_of, subject_of
from controller.runtime.caches import NAMESPACES, Caches


def read_tenancy(caches: Caches, operator_namespace: str, namespaces: Iterable[str]) -> Tenancy:
    """The policies of ``namespaces`` as the Namespace cache has them."""
    return Tenancy(
        operator_namespace,
        {
            ns: NamespacePolicy.of(ns, caches.get(NAMESPACES, "", ns))
            for ns in set(namespaces)
            if ns
        },
    )


def judge_boundary(
    caches: Caches,
    operator_namespace: str,
    invoker: JSON,
    views: Sequence[MemberRef],
    repository: Repository | None,
) -> tuple[Subject, list[Refusal]]:
    """What the boundary judges of ``invoker`` and everything it refuses of it now."""
    tenancy = read_tenancy(caches, operator_namespace, namespaces_of(invoker, views, repository))
    subject = subject_of(invoker, views, repository)
    return subject, refusals(tenancy, subject)
