"""Backup and restore hooks (Stash's ``preBackup`` / ``postBackup`` / ``preRestore`` /
``postRestore`` handlers): exec, httpGet, httpPost and tcpSocket, run from where the backup or
restore runs (the ``stash`` sidecar, ``stash-init``, or the Job's container), and ``around``,
which runs a member's pair of them around its work on one host.

``exec`` runs the command in this container, which mounts the same volumes as the workload; a
``containerName`` naming another container is refused with a clear error rather than silently
run in the wrong place. HTTP hooks default to this pod's own address (loopback: a sidecar shares
the pod's network). A hook succeeds on exit code 0, on a 2xx response, or on a connection.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from urllib.parse import urlencode

from api.addresses import forbidden_address
from api.common import Handler, HTTPGetAction, HTTPPostAction, PostHook
from api.hooks import HookKind, should_run_post_hook
from engine.results import HookOutcome, HostResult

log = logging.getLogger(__name__)
HOOK_TIMEOUT = 300.0
_OUTPUT_CHARS = 500


class HookError(RuntimeError):
    """The hook failed; the message says which hook and how."""


def _port(value: int | str) -> int:
    if isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    raise HookError(f"named port {value!r} is not supported in hooks; use the port number")


def _vetted(host: str, port: int) -> str:
    """The address to connect to for ``host``: resolved here, and refused when any address it
    resolves to is one no hook may call (``api.addresses``) — a DNS name or a decimal, octal
    or hexadecimal form of a metadata address included. The connection then goes to exactly
    the address checked."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HookError(f"{host}:{port}: cannot be resolved: {exc}") from None
    addresses = [str(info[4][0]) for info in found]
    for address in addresses:
        why = forbidden_address(address)
        if why:
            raise HookError(f"{host} is {address}, {why}: no hook may call it")
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to ``address``, the vetted address of ``host`` (which stays the Host header)."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the vetted ``address`` of ``host`` (its name still sent as SNI and Host)."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def _http(
    action: HTTPGetAction,
    method: str,
    *,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
    default_host: str | None,
) -> str:
    host = action.host or default_host
    if not host:
        raise HookError(f"{method} {action.path or '/'}: no host given")
    port = _port(action.port)
    path = action.path or "/"
    address = _vetted(host, port)
    if (action.scheme or "HTTP").upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # as the kubelet's probes: no verification
        conn: http.client.HTTPConnection = _PinnedHTTPS(host, address, port, timeout, context)
    else:
        conn = _PinnedHTTP(host, address, port, timeout)
    for header in action.http_headers or []:
        headers[header.name] = header.value
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(_OUTPUT_CHARS).decode(errors="replace")
    except OSError as exc:
        raise HookError(f"{method} {host}:{port}{path}: {exc}") from None
    finally:
        conn.close()
    if not 200 <= response.status < 300:
        raise HookError(f"{method} {host}:{port}{path} returned {response.status}: {text}")
    return f"{method} {path}: {response.status}"


def _post(action: HTTPPostAction, timeout: float, default_host: str | None) -> str:
    headers: dict[str, str] = {}
    body: bytes | None = None
    if action.body is not None:
        body = action.body.encode()
        headers["Content-Type"] = "application/json"
    elif action.form:
        pairs = [(entry.key or "", value) for entry in action.form for value in entry.values or []]
        body = urlencode(pairs).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return _http(
        action, "POST", body=body, headers=headers, timeout=timeout, default_host=default_host
    )


def run_hook(
    kind: HookKind,
    handler: Handler,
    *,
    own_container: str,
    env: dict[str, str] | None = None,
    timeout: float = HOOK_TIMEOUT,
    default_host: str | None = "127.0.0.1",
) -> str:
    """Run one hook in this container; a short description of what ran, or ``HookError``.

    A BackupBatch's own hooks run in their hook Job's pod with no default host (that pod is not
    the target's); a member's run in the sidecar or the backup Job, beside the application.
    """
    if handler.container_name and handler.container_name != own_container:
        raise HookError(
            f"{kind} hook: exec in container {handler.container_name!r} is not supported; "
            f"hooks run in the {own_container!r} container"
        )
    try:
        if handler.exec and handler.exec.command:
            return _exec(handler.exec.command, env, timeout)
        if handler.http_post:
            return _post(handler.http_post, timeout, default_host)
        if handler.http_get:
            return _http(
                handler.http_get,
                "GET",
                body=None,
                headers={},
                timeout=timeout,
                default_host=default_host,
            )
        if handler.tcp_socket:
            host = handler.tcp_socket.host or default_host
            if not host:
                raise HookError("tcpSocket: no host given")
            port = _port(handler.tcp_socket.port)
            with socket.create_connection((_vetted(host, port), port), timeout=timeout):
                return f"tcp {host}:{port}: connected"
    except HookError as exc:
        raise HookError(f"{kind} hook: {exc}") from None
    raise HookError(f"{kind} hook has no action (exec, httpGet, httpPost or tcpSocket)")


def _exec(command: list[str], env: dict[str, str] | None, timeout: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        raise HookError(f"exec {command[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise HookError(f"exec {command[0]}: timed out after {timeout:.0f}s") from None
    output = (done.stderr or done.stdout).decode(errors="replace").strip()[-_OUTPUT_CHARS:]
    if done.returncode != 0:
        raise HookError(f"exec {command[0]} exited with {done.returncode}: {output}")
    return f"exec {command[0]}: ok"


def around(
    hostname: str,
    pre: tuple[HookKind, Handler | None],
    post: tuple[HookKind, PostHook | None],
    work: Callable[[], HostResult],
    *,
    own_container: str,
    final_attempt: bool = True,
) -> HostResult:
    """A member's hooks around its work on one host: a failed pre hook fails the host without
    the work; the post hook runs as its ``executionPolicy`` says, and its failure fails the
    host. Each outcome travels in the result (the target's hook conditions)."""
    started = time.monotonic()
    outcomes: list[HookOutcome] = []
    result: HostResult | None = None
    pre_kind, pre_handler = pre
    if pre_handler is not None:
        try:
            done = run_hook(pre_kind, pre_handler, own_container=own_container)
            outcomes.append(HookOutcome(pre_kind, True, done))
        except HookError as exc:
            outcomes.append(HookOutcome(pre_kind, False, str(exc)))
            result = HostResult(hostname, "Failed", time.monotonic() - started, error=str(exc))
    if result is None:
        result = work()
    post_kind, post_handler = post
    if post_handler is not None and should_run_post_hook(
        post_handler.execution_policy, result.succeeded, final_attempt
    ):
        try:
            done = run_hook(post_kind, post_handler, own_container=own_container)
            outcomes.append(HookOutcome(post_kind, True, done))
        except HookError as exc:
            outcomes.append(HookOutcome(post_kind, False, str(exc)))
            error = "; ".join(e for e in (result.error, str(exc)) if e)
            result = dataclasses.replace(result, phase="Failed", error=error)
    return dataclasses.replace(result, hooks=tuple(outcomes))
