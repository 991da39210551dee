"""The tenant boundary: one chain of small pure checks over everything an invoker reaches.

A team that may edit Stash objects in its namespace can do no more through the operator than it
could do itself (DESIGN.md section 2, ``docs/security.md``). Every field that decides what is
read, written, mounted or run is judged here, on every pass, by the operator's reconcilers
(backup invokers, backup sessions, restores) and by the webhook, for backup and restore, sidecar
and Job members alike:

- ``target_refusal``: a target in another namespace only where that namespace's annotation
  ``stash.appscode.com/allowed-invoker-namespaces`` lists the invoker's; never the operator's
  namespace or ``kube-system``; never a workload's sidecar or a PVC across namespaces;
- ``repository_refusal``: a Repository of another namespace only where its ``usagePolicy``
  allows the invoker's namespace; never one in the operator's namespace or ``kube-system``;
- ``backend_refusals``: a local backend's volume is mounted into the invoker's pods, so a
  ``hostPath`` one (the node's files) needs the admin's decision, as below;
- ``settings_refusals``: ``runtimeSettings`` that make a pod privileged (privileged, added
  capabilities, host namespaces, unconfined profiles, unsafe sysctls) or pick who it runs as
  or what it may preempt (``serviceAccountName``, ``priorityClassName``, ``runtimeClassName``,
  ``schedulerName``) need the admin's decision.

The admin's decision is the Namespace annotation ``stash.appscode.com/allowed-privileges``
(comma-separated: ``hostPath``, ``privileged``, ``identity``, or ``*``): only who may edit
Namespace objects (a cluster administrator) can write it, ``stash-edit`` cannot. Whatever it
allows, the namespace's Pod Security level (label ``pod-security.kubernetes.io/enforce``)
still holds: nothing the API server would refuse to the namespace's own pods is made for it.

``refusals(tenancy, subject)`` runs the whole chain; each ``Refusal`` names the field, a
reason for conditions and the why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.constants import GROUP, PVC_KIND
from api.pod_members import WORKLOAD_KINDS
from api.repository import Repository

ALLOW_ANNOTATION = f"{GROUP}/allowed-invoker-namespaces"
PRIVILEGES_ANNOTATION = f"{GROUP}/allowed-privileges"
PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
NEVER_TARGETS = frozenset({"kube-system"})
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
REPOSITORY_REFUSED = "RepositoryUsageNotAllowed"  # the reason of a refused Repository

# The privileges an admin may allow a namespace (PRIVILEGES_ANNOTATION), and what they cover.
HOST_PATH = "hostPath"  # a local backend on the node's own files
PRIVILEGED = "privileged"  # what Pod Security's baseline level forbids
IDENTITY = "identity"  # who the pod runs as, what it may preempt, which runtime and scheduler
PRIVILEGES = (HOST_PATH, PRIVILEGED, IDENTITY)
IDENTITY_KEYS = ("serviceAccountName", "priorityClassName", "runtimeClassName", "schedulerName")

# Pod Security levels, weakest first.
LEVELS = ("privileged", "baseline", "restricted")
# Capabilities Pod Security's baseline level lets a container add.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
# Volume sources Pod Security's restricted level allows (a local backend is a volume source).
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
_SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")


@dataclass(frozen=True)
class NamespacePolicy:
    """What the rules read of one Namespace object: its grants and its Pod Security level."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, obj: Mapping[str, Any] | None) -> NamespacePolicy:
        meta = (obj or {}).get("metadata") or {}
        return cls(
            name,
            {str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
        )

    def _listed(self, key: str) -> frozenset[str]:
        raw = self.annotations.get(key) or ""
        return frozenset(part.strip() for part in raw.split(",") if part.strip())

    @property
    def allowed_invokers(self) -> frozenset[str]:
        """The invoker namespaces this namespace lets reach its objects."""
        return self._listed(ALLOW_ANNOTATION)

    def allows(self, privilege: str) -> bool:
        listed = self._listed(PRIVILEGES_ANNOTATION)
        return privilege in listed or "*" in listed

    @property
    def pod_security(self) -> str:
        """The Pod Security level enforced on the namespace's pods (``privileged`` unset)."""
        level = self.labels.get(PSA_ENFORCE_LABEL, "privileged")
        return level if level in LEVELS else "restricted"  # an unknown level: the strictest


@dataclass(frozen=True)
class Refusal:
    """One field the boundary refuses: where, a reason for conditions, and why in words."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Tenancy:
    """What the rules need to know: the operator's namespace and the Namespaces in play (an
    absent one grants nothing and allows nothing)."""

    operator_namespace: str
    namespaces: Mapping[str, NamespacePolicy] = field(default_factory=dict)

    def namespace(self, name: str) -> NamespacePolicy:
        return self.namespaces.get(name) or NamespacePolicy(name)

    def protected(self, namespace: str) -> bool:
        return namespace in NEVER_TARGETS or namespace == self.operator_namespace

    def refusal(
        self, invoker_namespace: str, target_namespace: str, kind: str, sidecar: bool
    ) -> str | None:
        """Why an invoker in ``invoker_namespace`` may not target ``kind`` in
        ``target_namespace``, or None when it may."""
        if target_namespace == invoker_namespace:
            return None
        if self.protected(target_namespace):
            return f"namespace {target_namespace} is never a backup target of another namespace"
        if sidecar and kind in WORKLOAD_KINDS:
            return (
                f"a {kind}'s stash sidecar runs in namespace {target_namespace} and serves "
                f"only invokers there; create the invoker in {target_namespace}"
            )
        if kind == PVC_KIND:
            return (
                f"a PersistentVolumeClaim can be mounted only by pods in its own namespace "
                f"({target_namespace}); create the invoker there"
            )
        if invoker_namespace not in self.namespace(target_namespace).allowed_invokers:
            return (
                f"namespace {target_namespace} does not allow invokers from "
                f"{invoker_namespace} (its annotation {ALLOW_ANNOTATION} must list "
                f"{invoker_namespace})"
            )
        return None


@dataclass(frozen=True)
class Member:
    """One member as the rules see it: where it is in the spec, its target, whether it runs in
    the workload's own pods (sidecar, stash-init), and its ``runtimeSettings``."""

    where: str  # "spec.members[1]", or "spec" for a single-target invoker
    kind: str
    name: str
    target_namespace: str
    in_pods: bool
    runtime_settings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Subject:
    """Everything of one invoker the boundary judges."""

    namespace: str
    repository: Repository | None
    members: Sequence[Member] = ()
    runtime_settings: Mapping[str, Any] | None = None  # the invoker's own (batch hooks, trigger)
    repository_field: str = "spec.repository"


def _obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is an object, else empty: the rules read what a tenant wrote and never
    trust its shape."""
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


# -- the rules -----------------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and (not present or labels[key] not in values))
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def usage_refusal(repo: Repository, namespace: str, labels: Mapping[str, str]) -> str | None:
    """Why ``namespace`` (with ``labels``) may not use ``repo`` by its usagePolicy, or None."""
    policy = repo.spec.usage_policy.allowed_namespaces if repo.spec.usage_policy else None
    origin = policy.from_ if policy else "Same"
    repo_ns = repo.metadata.namespace or ""
    if origin == "All" or (origin == "Same" and namespace == repo_ns):
        return None
    if origin == "Selector" and policy is not None:
        for i, expr in enumerate((policy.selector or {}).get("matchExpressions") or []):
            if expr.get("operator") not in SELECTOR_OPERATORS:
                return (
                    f"Repository {repo_ns}/{repo.metadata.name}: spec.usagePolicy."
                    f"allowedNamespaces.selector.matchExpressions[{i}].operator: "
                    f"{expr.get('operator')!r} is not one of {', '.join(SELECTOR_OPERATORS)}"
                )
        if selector_matches(policy.selector, labels):
            return None
        return f"namespace {namespace} does not match the Repository's allowedNamespaces.selector"
    return f"Repository {repo_ns}/{repo.metadata.name} only allows its own namespace"


def repository_refusal(tenancy: Tenancy, subject: Subject) -> Refusal | None:
    """A Repository of another namespace: only where its usagePolicy allows the invoker's
    namespace, never one in the operator's namespace or kube-system."""
    repo = subject.repository
    if repo is None:
        return None
    repo_ns = repo.metadata.namespace or subject.namespace
    if repo_ns == subject.namespace:
        return None
    if tenancy.protected(repo_ns):
        why: str | None = f"a Repository in namespace {repo_ns} serves only invokers there"
    else:
        why = usage_refusal(repo, subject.namespace, tenancy.namespace(subject.namespace).labels)
    return Refusal(subject.repository_field, REPOSITORY_REFUSED, why) if why else None


def _needs(
    policy: NamespacePolicy, where: str, privilege: str, level: str, what: str
) -> Refusal | None:
    """A setting that needs ``privilege`` from the admin and breaks Pod Security ``level``
    (the lowest level that forbids it; "" for none): refused unless both allow it."""
    namespace = policy.name
    if level and LEVELS.index(policy.pod_security) >= LEVELS.index(level):
        return Refusal(
            where,
            "PodSecurityViolation",
            f"{what}: namespace {namespace} enforces Pod Security level "
            f"{policy.pod_security!r}, which forbids it",
        )
    if privilege and not policy.allows(privilege):
        return Refusal(
            where,
            "PrivilegeNotAllowed",
            f"{what} needs a cluster administrator's decision: the annotation "
            f"{PRIVILEGES_ANNOTATION} of namespace {namespace} must list {privilege!r}",
        )
    return None


def backend_refusals(tenancy: Tenancy, subject: Subject) -> list[Refusal]:
    """A local backend's volume is mounted into the invoker's own pods: a hostPath one needs
    the ``hostPath`` privilege, and the volume's type must suit the namespace's Pod Security."""
    repo = subject.repository
    local = repo.spec.backend.local if repo else None
    if local is None:
        return []
    policy = tenancy.namespace(subject.namespace)
    sources = [k for k in local.to_dict() if k not in ("mountPath", "subPath")]
    where = f"Repository {repo.metadata.namespace}/{repo.metadata.name}" if repo else ""
    found = []
    for source in sources:
        what = f"{where} spec.backend.local.{source}"
        if source == "hostPath":
            refused = _needs(policy, subject.repository_field, HOST_PATH, "baseline", what)
        elif source not in RESTRICTED_VOLUMES:
            refused = _needs(policy, subject.repository_field, "", "restricted", what)
        else:
            refused = None
        if refused:
            found.append(refused)
    return found


def _container_refusals(
    policy: NamespacePolicy, where: str, settings: Mapping[str, Any]
) -> list[Refusal]:
    context = _obj(settings.get("securityContext"))
    found: list[Refusal | None] = []
    at = f"{where}.securityContext"
    if context.get("privileged") is True:
        found.append(
            _needs(
                policy,
                f"{at}.privileged",
                PRIVILEGED,
                "baseline",
                "a privileged container",
            )
        )
    added = [str(a) for a in _list(_obj(context.get("capabilities")).get("add"))]
    beyond = [a for a in added if a.upper().removeprefix("CAP_") not in BASELINE_CAPABILITIES]
    if beyond:
        found.append(
            _needs(
                policy,
                f"{at}.capabilities.add",
                PRIVILEGED,
                "baseline",
                f"adding {', '.join(beyond)}",
            )
        )
    elif [a for a in added if a.upper().removeprefix("CAP_") != "NET_BIND_SERVICE"]:
        found.append(
            _needs(
                policy,
                f"{at}.capabilities.add",
                "",
                "restricted",
                f"adding {', '.join(added)}",
            )
        )
    found += _profile_refusals(policy, at, context)
    if context.get("allowPrivilegeEscalation") is True:
        found.append(
            _needs(
                policy,
                f"{at}.allowPrivilegeEscalation",
                "",
                "restricted",
                "privilege escalation",
            )
        )
    found += _user_refusals(policy, at, context)
    return [r for r in found if r]


def _profile_refusals(
    policy: NamespacePolicy, at: str, context: Mapping[str, Any]
) -> list[Refusal | None]:
    """What Pod Security's baseline level forbids of a security context's profiles."""
    selinux = _obj(context.get("seLinuxOptions"))
    forbidden = (
        (
            _obj(context.get("seccompProfile")).get("type") == "Unconfined",
            "seccompProfile.type",
            "an unconfined seccomp profile",
        ),
        (
            _obj(context.get("appArmorProfile")).get("type") == "Unconfined",
            "appArmorProfile.type",
            "an unconfined AppArmor profile",
        ),
        (
            bool(selinux.get("user") or selinux.get("role"))
            or selinux.get("type", "") not in _SELINUX_TYPES,
            "seLinuxOptions",
            "custom SELinux options",
        ),
        (context.get("procMount") not in (None, "Default"), "procMount", "an unmasked /proc"),
        (
            _obj(context.get("windowsOptions")).get("hostProcess") is True,
            "windowsOptions.hostProcess",
            "a host process",
        ),
    )
    return [
        _needs(policy, f"{at}.{field}", PRIVILEGED, "baseline", what)
        for present, field, what in forbidden
        if present
    ]


def _user_refusals(
    policy: NamespacePolicy, at: str, context: Mapping[str, Any]
) -> list[Refusal | None]:
    found = []
    if context.get("runAsUser") == 0:
        found.append(_needs(policy, f"{at}.runAsUser", "", "restricted", "running as root (uid 0)"))
    if context.get("runAsNonRoot") is False:
        found.append(_needs(policy, f"{at}.runAsNonRoot", "", "restricted", "running as root"))
    return found


def _pod_refusals(policy: NamespacePolicy, where: str, pod: Mapping[str, Any]) -> list[Refusal]:
    found: list[Refusal | None] = []
    for key in IDENTITY_KEYS:
        if pod.get(key):
            found.append(_needs(policy, f"{where}.{key}", IDENTITY, "", f"{key} {pod[key]!r}"))
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key) is True:
            found.append(
                _needs(
                    policy,
                    f"{where}.{key}",
                    PRIVILEGED,
                    "baseline",
                    f"{key}: {pod[key]}",
                )
            )
    context = _obj(pod.get("securityContext"))
    if context:
        at = f"{where}.securityContext"
        found += _profile_refusals(policy, at, context)
        found += _user_refusals(policy, at, context)
        unsafe = [
            str(s.get("name"))
            for s in _list(context.get("sysctls"))
            if isinstance(s, Mapping) and str(s.get("name")) not in SAFE_SYSCTLS
        ]
        if unsafe:
            found.append(
                _needs(
                    policy,
                    f"{at}.sysctls",
                    PRIVILEGED,
                    "baseline",
                    f"sysctls {', '.join(unsafe)}",
                )
            )
    return [r for r in found if r]


def settings_refusals(
    tenancy: Tenancy, namespace: str, where: str, settings: Mapping[str, Any] | None
) -> list[Refusal]:
    """``runtimeSettings`` at ``where`` (``spec.members[0].runtimeSettings``) for pods the
    operator or the webhook makes in ``namespace``: what needs a privilege the namespace was
    not given, or that its Pod Security level forbids."""
    if not settings:
        return []
    policy = tenancy.namespace(namespace)
    found = []
    pod = settings.get("pod")
    if isinstance(pod, Mapping):
        found += _pod_refusals(policy, f"{where}.pod", pod)
    container = settings.get("container")
    if isinstance(container, Mapping):
        found += _container_refusals(policy, f"{where}.container", container)
    return found


# -- the chain -----------------------------------------------------------------------------------


def target_refusals(tenancy: Tenancy, subject: Subject) -> list[Refusal]:
    found = []
    for member in subject.members:
        if not member.kind or not member.name:
            continue
        why = tenancy.refusal(
            subject.namespace, member.target_namespace, member.kind, member.in_pods
        )
        if why:
            found.append(Refusal(f"{member.where}.target.ref.namespace", "TargetNotAllowed", why))
    return found


def member_settings_refusals(tenancy: Tenancy, subject: Subject) -> list[Refusal]:
    found = []
    for member in subject.members:
        found += settings_refusals(
            tenancy, subject.namespace, f"{member.where}.runtimeSettings", member.runtime_settings
        )
    return found


def invoker_settings_refusals(tenancy: Tenancy, subject: Subject) -> list[Refusal]:
    return settings_refusals(
        tenancy, subject.namespace, "spec.runtimeSettings", subject.runtime_settings
    )


def _repository(tenancy: Tenancy, subject: Subject) -> list[Refusal]:
    refused = repository_refusal(tenancy, subject)
    return [refused] if refused else []


Check = Callable[[Tenancy, Subject], Iterable[Refusal]]
CHECKS: tuple[Check, ...] = (
    target_refusals,
    _repository,
    backend_refusals,
    member_settings_refusals,
    invoker_settings_refusals,
)


def refusals(tenancy: Tenancy, subject: Subject) -> list[Refusal]:
    """Every refusal of the chain, in order (targets, repository, backend, settings). Fields
    the subject does not have are not judged; a refusal never depends on an earlier pass."""
    found: list[Refusal] = []
    seen: set[str] = set()
    for check in CHECKS:
        for refusal in check(tenancy, subject):
            if str(refusal) not in seen:
                seen.add(str(refusal))
                found.append(refusal)
    return found


def member_of(refusal: Refusal, members: Iterable[Member]) -> Member | None:
    """The member a refusal's field belongs to (None: the invoker's own field)."""
    for member in members:
        if member.where != "spec" and refusal.field.startswith(member.where + "."):
            return member
    return None
