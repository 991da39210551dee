"""Backup hooks: exec, httpGet, httpPost, tcpSocket, and the post-hook policy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.hooks import HookError, run_hook
from agent.host_backup import HostJob, backup_member_for, with_hooks
from agent.run_hook import execute
from api.common import BackupHooks, Handler
from api.hooks import is_final_attempt, should_run_post_hook
from engine.results import HostResult
from tests.factories import batch, member


class _Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, bytes]] = []  # noqa: RUF012 - shared by the test server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.requests.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(500 if self.path == "/fail" else 200)
        self.end_headers()
        self.wfile.write(b"flushed")

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = HTTPServer(("127.0.0.1", 0), _Recorder)
    # A tcpSocket hook connects and closes at once: its connection can be gone between the
    # server's select and its accept, and a blocking accept would then hang shutdown().
    httpd.socket.setblocking(False)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Recorder.requests = []
    yield httpd.server_address[1]
    httpd.shutdown()


def hook(**spec: Any) -> Handler:
    return Handler.model_validate(spec)


def test_an_exec_hook_runs_in_this_container(tmp_path: Path) -> None:
    marker = tmp_path / "flushed"
    run_hook("preBackup", hook(exec={"command": ["touch", str(marker)]}), own_container="stash")
    assert marker.exists()


def test_a_failing_exec_hook_says_which_hook_and_what_it_printed() -> None:
    with pytest.raises(HookError, match="preBackup hook: exec sh exited with 3: disk full"):
        run_hook(
            "preBackup",
            hook(exec={"command": ["sh", "-c", "echo disk full >&2; exit 3"]}),
            own_container="stash",
        )


def test_exec_in_another_container_is_refused_rather_than_run_here() -> None:
    with pytest.raises(HookError, match="container 'app' is not supported"):
        run_hook(
            "preBackup",
            hook(exec={"command": ["true"]}, containerName="app"),
            own_container="stash",
        )


def test_http_hooks_call_the_pod_and_fail_on_a_non_2xx(server: int) -> None:
    run_hook("preBackup", hook(httpGet={"port": server, "path": "/freeze"}), own_container="stash")
    run_hook(
        "postBackup",
        hook(httpPost={"port": str(server), "path": "/thaw", "body": '{"ok": true}'}),
        own_container="stash",
    )
    assert _Recorder.requests == [("GET", "/freeze", b""), ("POST", "/thaw", b'{"ok": true}')]
    with pytest.raises(HookError, match="returned 500"):
        run_hook(
            "postBackup", hook(httpGet={"port": server, "path": "/fail"}), own_container="stash"
        )


def test_a_tcp_hook_needs_a_listener(server: int) -> None:
    assert "connected" in run_hook(
        "preBackup", hook(tcpSocket={"port": server}), own_container="stash"
    )


def test_post_hooks_follow_their_execution_policy() -> None:
    assert should_run_post_hook("Always", False, final_attempt=False)
    assert should_run_post_hook(None, True, final_attempt=True)
    assert should_run_post_hook("OnSuccess", True, final_attempt=True)
    assert not should_run_post_hook("OnSuccess", False, final_attempt=True)
    assert should_run_post_hook("OnFailure", False, final_attempt=False)
    assert not should_run_post_hook("OnFailure", True, final_attempt=True)
    assert should_run_post_hook("OnFinalRetryFailure", False, final_attempt=True)
    assert not should_run_post_hook("OnFinalRetryFailure", False, final_attempt=False)
    assert not should_run_post_hook("OnFinalRetryFailure", True, final_attempt=True)


def test_the_final_attempt_is_the_one_no_retry_follows() -> None:
    def invoker(retry: dict[str, Any] | None) -> dict[str, Any]:
        return {"spec": {"retryConfig": retry} if retry is not None else {}}

    assert is_final_attempt({"spec": {}}, invoker(None))
    assert not is_final_attempt({"spec": {}}, invoker({"delay": "1m"}))  # Stash: maxRetry 1
    assert is_final_attempt({"spec": {}}, invoker({"maxRetry": 0}))
    assert not is_final_attempt({"spec": {"retryLeft": 2}}, invoker({"maxRetry": 3}))
    assert is_final_attempt({"spec": {"retryLeft": 0}}, invoker({"maxRetry": 3}))


def test_a_batch_hook_runs_exec_in_its_own_pod_and_needs_a_host_for_network_hooks(
    server: int, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    done = execute({"exec": {"command": ["touch", str(marker)]}}, "preBackup")
    assert done.ok, done.message
    assert marker.exists()
    assert done.type == "GlobalPreBackupHookSucceeded"
    no_host = execute({"httpGet": {"port": server}}, "postBackup")
    assert not no_host.ok
    assert "no host given" in no_host.message
    assert no_host.type == "GlobalPostBackupHookSucceeded"
    assert execute({"httpGet": {"host": "127.0.0.1", "port": server}}, "preBackup").ok
    other = execute({"exec": {"command": ["true"]}, "containerName": "app"}, "preBackup")
    assert not other.ok
    assert "container 'app'" in other.message


def _job() -> HostJob:
    return HostJob("demo", "s-1", "BackupBatch", "b", "PersistentVolumeClaim", "data", "host-0")


def test_a_failed_pre_hook_fails_the_host_without_backing_up(tmp_path: Path) -> None:
    ran: list[str] = []
    hooks = BackupHooks.model_validate(
        {
            "preBackup": {"exec": {"command": ["false"]}},
            "postBackup": {
                "exec": {"command": ["touch", str(tmp_path / "post")]},
                "executionPolicy": "OnFailure",
            },
        }
    )

    def back_up() -> HostResult:
        ran.append("backup")
        return HostResult("host-0", "Succeeded", 1.0)

    result = with_hooks(_job(), hooks, back_up, own_container="pvc-backup", final_attempt=True)
    assert ran == []
    assert result.phase == "Failed"
    assert [(h.kind, h.ok) for h in result.hooks] == [("preBackup", False), ("postBackup", True)]
    assert (tmp_path / "post").exists()  # OnFailure: it ran


def test_a_failed_post_hook_fails_a_good_backup_and_says_both(tmp_path: Path) -> None:
    hooks = BackupHooks.model_validate({"postBackup": {"exec": {"command": ["false"]}}})
    result = with_hooks(
        _job(),
        hooks,
        lambda: HostResult("host-0", "Succeeded", 1.0),
        own_container="pvc-backup",
        final_attempt=True,
    )
    assert result.phase == "Failed"
    assert "postBackup hook" in result.error
    assert [(h.kind, h.ok) for h in result.hooks] == [("postBackup", False)]


def test_the_member_of_a_target_is_found_by_its_ref() -> None:
    invoker = batch("b", "demo", member("Deployment", "web"), member("PersistentVolumeClaim", "d"))
    found = backup_member_for(invoker, "PersistentVolumeClaim", "d")
    assert found is not None
    assert found.target is not None
    assert found.target.ref is not None
    assert found.target.ref.name == "d"
    assert backup_member_for(invoker, "PersistentVolumeClaim", "other") is None


@pytest.mark.parametrize(
    "host",
    ["169.254.169.254", "2852039166", "0251.0376.0251.0376", "0xa9fea9fe", "[::ffff:a9fe:a9fe]"],
)
@pytest.mark.parametrize("action", ["tcpSocket", "httpGet"])
def test_a_hook_to_a_metadata_address_in_any_form_is_refused_before_connecting(
    host: str, action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", never)
    handler = Handler.model_validate({action: {"host": host.strip("[]"), "port": 80}})
    with pytest.raises(HookError, match=r"link-local .*: no hook may call it"):
        run_hook("preBackup", handler, own_container="stash")


def test_a_name_that_resolves_to_a_metadata_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the name, the address it resolves to is what is checked and then dialled."""
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "innocent.example":
            return real("169.254.169.254", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    handler = Handler.model_validate({"httpGet": {"host": "innocent.example", "port": 80}})
    with pytest.raises(HookError, match=r"innocent.example is 169.254.169.254, link-local"):
        run_hook("preBackup", handler, own_container="stash")


def test_a_hook_connects_to_the_address_it_checked_and_keeps_the_name_as_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    class Handler_(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers["Host"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler_)
    threading.Thread(target=server.handle_request, daemon=True).start()
    port = server.server_address[1]
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "app.local" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    handler = Handler.model_validate({"httpGet": {"host": "app.local", "port": port}})
    assert run_hook("preBackup", handler, own_container="stash") == "GET /: 200"
    server.server_close()
    assert seen == [f"app.local:{port}"]
