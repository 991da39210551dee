"""Where the API server is and how to prove who we are: a kubeconfig or the pod's service account.

``load`` turns either into a ``Connection``: the server's URL, an SSL context (the cluster's CA,
a client certificate) and ``Credentials`` that give the request headers, re-read when they
rotate (a projected service-account token, an exec plugin's expiring token). Only the standard
library and PyYAML (for kubeconfigs, imported when one is read) are used, so that a sidecar pays
for no more than it needs.

kubeconfig semantics follow kubectl's: ``$KUBECONFIG`` may list several files (the first to
define a name wins, as does the first ``current-context``), relative paths are relative to the
file that names them, ``*-data`` fields win over their file forms. Credentials: client
certificates, ``token`` / ``tokenFile``, basic auth, and exec plugins (``client.authentication.
k8s.io`` v1 and v1beta1). Legacy ``auth-provider`` entries and ``proxy-url`` are refused with a
message saying so: they are not silently ignored.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.objects import JSON

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"
TOKEN_REREAD_SECONDS = 60.0  # projected tokens rotate; the kubelet refreshes them well before
EXEC_EXPIRY_MARGIN = 10.0  # re-run an exec plugin this long before its token expires
EXEC_TIMEOUT = 60.0


class ConfigError(ValueError):
    """The kubeconfig or the pod's service account cannot be used; the message says why (and
    never holds a credential)."""


# -- credentials ------------------------------------------------------------------------------


class Credentials:
    """No credentials: the base of the kinds below. ``headers()`` is called before every
    request and is thread-safe."""

    def headers(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class StaticToken(Credentials):
    token: str = field(repr=False)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class BasicAuth(Credentials):
    username: str
    password: str = field(repr=False)

    def headers(self) -> dict[str, str]:
        pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}


class TokenFile(Credentials):
    """A bearer token read from a file and re-read once it is a minute old (the kubelet
    rotates projected service-account tokens in place)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._read_at = -TOKEN_REREAD_SECONDS

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            if not self._token or now - self._read_at >= TOKEN_REREAD_SECONDS:
                try:
                    token = self.path.read_text().strip()
                except OSError as exc:
                    if not self._token:
                        raise ConfigError(f"token file {self.path}: {exc.strerror}") from None
                    token = self._token  # keep the last one; the next request tries again
                self._token, self._read_at = token, now
            return {"Authorization": f"Bearer {self._token}"}


@dataclass(frozen=True)
class ExecResult:
    """What an exec plugin answered (``ExecCredential.status``)."""

    token: str = field(default="", repr=False)
    client_certificate: str = field(default="", repr=False)
    client_key: str = field(default="", repr=False)
    expires: float | None = None  # seconds since the epoch


class ExecPlugin(Credentials):
    """A client-go credential plugin: a command that prints an ``ExecCredential``. Run when
    first needed and again shortly before the token it gave expires."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        base_dir: Path,
        run: Callable[[list[str], dict[str, str]], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        command = str(spec.get("command") or "")
        if not command:
            raise ConfigError("users[].user.exec: command is required")
        if "/" in command and not Path(command).is_absolute():
            command = str(base_dir / command)  # relative to the kubeconfig, as client-go does
        self.argv = [command, *[str(a) for a in spec.get("args") or []]]
        self.api_version = str(spec.get("apiVersion") or "client.authentication.k8s.io/v1")
        self.env = {str(e["name"]): str(e.get("value", "")) for e in spec.get("env") or []}
        self._run = run or _run_plugin
        self._clock = clock
        self._lock = threading.Lock()
        self._result: ExecResult | None = None

    def __repr__(self) -> str:
        return f"ExecPlugin({self.argv[0]!r})"

    def credential(self) -> ExecResult:
        with self._lock:
            result = self._result
            if result is None or (
                result.expires is not None and self._clock() >= result.expires - EXEC_EXPIRY_MARGIN
            ):
                result = self._result = self._execute()
            return result

    def headers(self) -> dict[str, str]:
        token = self.credential().token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _execute(self) -> ExecResult:
        info = {"apiVersion": self.api_version, "kind": "ExecCredential"}
        env = {
            **os.environ,
            **self.env,
            "KUBERNETES_EXEC_INFO": json.dumps({**info, "spec": {"interactive": False}}),
        }
        name = self.argv[0]
        output = self._run(self.argv, env)
        try:
            doc = json.loads(output)
        except ValueError:
            raise ConfigError(f"exec plugin {name} printed no ExecCredential JSON") from None
        status = doc.get("status") if isinstance(doc, dict) else None
        if not isinstance(status, dict):
            raise ConfigError(f"exec plugin {name}: its ExecCredential has no status")
        expires = None
        if status.get("expirationTimestamp"):
            try:
                stamp = str(status["expirationTimestamp"]).replace("Z", "+00:00")
                expires = dt.datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                raise ConfigError(
                    f"exec plugin {name}: expirationTimestamp is not RFC 3339"
                ) from None
        result = ExecResult(
            token=str(status.get("token") or ""),
            client_certificate=str(status.get("clientCertificateData") or ""),
            client_key=str(status.get("clientKeyData") or ""),
            expires=expires,
        )
        if not result.token and not (result.client_certificate and result.client_key):
            raise ConfigError(f"exec plugin {name} gave neither a token nor a client certificate")
        return result


def _run_plugin(argv: list[str], env: dict[str, str]) -> str:
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=EXEC_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"exec plugin {argv[0]}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1][:300]
        raise ConfigError(f"exec plugin {argv[0]} exited {done.returncode}: {last}")
    return done.stdout


# -- the connection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """Everything a client needs to reach one API server as one user."""

    server: str  # scheme://host[:port], no trailing slash
    ssl_context: ssl.SSLContext | None  # None for plain http
    credentials: Credentials
    namespace: str = "default"  # the context's (or the pod's) namespace
    tls_server_name: str = ""


def in_cluster(
    environ: Mapping[str, str] | None = None, account_dir: Path = SERVICE_ACCOUNT_DIR
) -> Connection:
    """The pod's service account: ``KUBERNETES_SERVICE_HOST``/``_PORT``, its token (re-read as
    it rotates), its CA and namespace."""
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError("not in a pod: KUBERNETES_SERVICE_HOST/PORT are not set")
    token = account_dir / "token"
    if not token.is_file():
        raise ConfigError(f"not in a pod: no service-account token at {token}")
    if ":" in host:
        host = f"[{host}]"  # IPv6
    context = _ssl_context(ca_file=account_dir / "ca.crt")
    try:
        namespace = (account_dir / "namespace").read_text().strip() or "default"
    except OSError:
        namespace = "default"
    return Connection(f"https://{host}:{port}", context, TokenFile(token), namespace)


def kubeconfig_paths(
    path: str | None = None, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """The files kubectl would read: ``path``, else each of ``$KUBECONFIG``, else
    ``~/.kube/config``."""
    env = os.environ if environ is None else environ
    if path:
        return [Path(path).expanduser()]
    listed = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in listed] or [Path(DEFAULT_KUBECONFIG).expanduser()]


@dataclass(frozen=True)
class _Named:
    """One cluster, user or context entry and the directory of the file that defined it."""

    body: JSON
    base_dir: Path


@dataclass
class Kubeconfig:
    """The merged kubeconfig files: named entries, first definition wins."""

    clusters: dict[str, _Named] = field(default_factory=dict)
    users: dict[str, _Named] = field(default_factory=dict)
    contexts: dict[str, _Named] = field(default_factory=dict)
    current_context: str = ""

    @classmethod
    def read(cls, paths: list[Path], *, explicit: bool) -> Kubeconfig:
        """Merge ``paths``; a missing file is skipped unless it was given ``explicit``ly. Raises
        ``ConfigError`` when none could be read."""
        import yaml  # noqa: PLC0415 - only kubeconfig readers pay for the YAML parser

        merged = cls()
        found = False
        for path in paths:
            try:
                text = path.read_text()
            except FileNotFoundError:
                if explicit:
                    raise ConfigError(f"kubeconfig {path}: no such file") from None
                continue
            except OSError as exc:
                raise ConfigError(f"kubeconfig {path}: {exc.strerror}") from None
            try:
                doc = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"kubeconfig {path}: not YAML ({exc})") from None
            if not isinstance(doc, dict):
                raise ConfigError(f"kubeconfig {path}: not a kubeconfig")
            found = True
            base = path.resolve().parent
            for key, into, inner in (
                ("clusters", merged.clusters, "cluster"),
                ("users", merged.users, "user"),
                ("contexts", merged.contexts, "context"),
            ):
                for entry in doc.get(key) or []:
                    if isinstance(entry, dict) and entry.get("name") not in into:
                        into[str(entry.get("name"))] = _Named(entry.get(inner) or {}, base)
            if not merged.current_context and doc.get("current-context"):
                merged.current_context = str(doc["current-context"])
        if not found:
            raise ConfigError(f"no kubeconfig at {', '.join(str(p) for p in paths)}")
        return merged

    def context(self, name: str | None = None) -> JSON:
        chosen = name or self.current_context
        if not chosen:
            raise ConfigError("the kubeconfig has no current-context; give a context")
        entry = self.contexts.get(chosen)
        if entry is None:
            raise ConfigError(f"the kubeconfig has no context {chosen!r}")
        return entry.body

    def connection(self, context_name: str | None = None) -> Connection:
        context = self.context(context_name)
        cluster = self.clusters.get(str(context.get("cluster") or ""))
        if cluster is None:
            raise ConfigError(f"the kubeconfig has no cluster {context.get('cluster')!r}")
        user = self.users.get(str(context.get("user") or ""), _Named({}, cluster.base_dir))
        c, u = cluster.body, user.body
        server = str(c.get("server") or "").rstrip("/")
        if not server.startswith(("https://", "http://")):
            raise ConfigError(f"cluster {context.get('cluster')!r}: server {server!r} is not a URL")
        if c.get("proxy-url"):
            raise ConfigError(f"cluster {context.get('cluster')!r}: proxy-url is not supported")
        if u.get("auth-provider"):
            name = (u["auth-provider"] or {}).get("name", "")
            raise ConfigError(
                f"user {context.get('user')!r}: auth-provider {name!r} is not supported; "
                "use an exec credential plugin"
            )
        credentials = _credentials(u, user.base_dir)
        cert = _data_or_file(u, "client-certificate", user.base_dir)
        key = _data_or_file(u, "client-key", user.base_dir)
        if isinstance(credentials, ExecPlugin) and not (cert and key):
            given = credentials.credential()  # a plugin may hand out a certificate instead
            if given.client_certificate and given.client_key:
                cert, key = given.client_certificate.encode(), given.client_key.encode()
        context_tls = None
        if server.startswith("https://"):
            context_tls = _ssl_context(
                ca_data=_data_or_file(c, "certificate-authority", cluster.base_dir),
                insecure=bool(c.get("insecure-skip-tls-verify")),
                cert=cert,
                key=key,
            )
        return Connection(
            server,
            context_tls,
            credentials,
            namespace=str(context.get("namespace") or "default"),
            tls_server_name=str(c.get("tls-server-name") or ""),
        )


def _data_or_file(entry: Mapping[str, Any], name: str, base: Path) -> bytes | None:
    """``<name>-data`` (base64) or the file ``<name>`` (relative to ``base``)."""
    data = entry.get(f"{name}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=False)
        except ValueError:
            raise ConfigError(f"{name}-data is not base64") from None
    path = entry.get(name)
    if path:
        file = Path(str(path)).expanduser()
        try:
            return (file if file.is_absolute() else base / file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name} {path}: {exc.strerror}") from None
    return None


def _credentials(user: Mapping[str, Any], base: Path) -> Credentials:
    if user.get("exec"):
        return ExecPlugin(user["exec"], base)
    if user.get("token"):
        return StaticToken(str(user["token"]))
    if user.get("tokenFile"):
        path = Path(str(user["tokenFile"])).expanduser()
        return TokenFile(path if path.is_absolute() else base / path)
    if user.get("username") and user.get("password") is not None:
        return BasicAuth(str(user["username"]), str(user["password"]))
    return Credentials()


def _ssl_context(
    *,
    ca_file: Path | None = None,
    ca_data: bytes | None = None,
    insecure: bool = False,
    cert: bytes | None = None,
    key: bytes | None = None,
) -> ssl.SSLContext:
    """A client TLS context: the given CA (else the system's), optionally a client pair."""
    try:
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
        elif ca_data:
            context = ssl.create_default_context(cadata=ca_data.decode("ascii", "replace"))
        else:
            context = ssl.create_default_context()
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"the cluster's certificate authority cannot be loaded: {exc}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert and key:
        _load_pair(context, cert, key)
    elif cert or key:
        raise ConfigError("a client certificate needs both client-certificate and client-key")
    return context


def _load_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load a client pair held in memory: OpenSSL reads only files, so they go to a private
    directory for the moment of loading and are removed at once."""
    with tempfile.TemporaryDirectory(prefix="stash-kube-") as tmp:
        cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        try:
            context.load_cert_chain(str(cert_path), str(key_path))
        except ssl.SSLError as exc:
            raise ConfigError(f"the client certificate or key cannot be loaded: {exc}") from None


def load(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    """The kubeconfig given (or ``$KUBECONFIG``, ``~/.kube/config``; its ``context`` or current
    one), else the pod's service account. A ``ConfigError`` says why neither is usable."""
    explicit = bool(kubeconfig)
    try:
        return Kubeconfig.read(kubeconfig_paths(kubeconfig), explicit=explicit).connection(context)
    except ConfigError as exc:
        missing = str(exc).startswith("no kubeconfig at")
        if explicit or context or not missing:
            raise
        try:
            return in_cluster()
        except ConfigError as inner:
            raise ConfigError(f"{exc}, and {inner}: give --kubeconfig") from None
