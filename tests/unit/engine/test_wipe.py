"""Which repositories can be wiped out, and how a SigV4 request is signed."""

from __future__ import annotations

import base64
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from engine.wipe import WipeError, can_wipe, wipe_out
from tests.unit.engine.test_backend import repo


def test_only_rest_and_s3_repositories_are_wiped() -> None:
    assert can_wipe(repo(rest={"url": "http://r:8000/x"}))
    assert can_wipe(repo(s3={"bucket": "b"}))
    assert not can_wipe(repo(local={"mountPath": "/data"}))
    assert not can_wipe(repo(gcs={"bucket": "b"}))
    with pytest.raises(WipeError, match="not supported for the gcs backend; its data is kept"):
        wipe_out(repo(gcs={"bucket": "b"}), {})


def test_a_non_http_url_is_refused() -> None:
    with pytest.raises(WipeError, match="only http and https"):
        wipe_out(repo(rest={"url": "file:///etc"}), {})


class _FakeS3(BaseHTTPRequestHandler):
    """Enough of S3 for a wipe-out: ListObjectsV2 by prefix over a bucket holding a restic
    repository under ``repo/`` and objects that are not restic's, then DeleteObjects."""

    BUCKET = ("repo/config", "repo/keys/1", "repo/data/00/2", "repo/notes.txt", "other/data/x")

    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def _reply(self, body: str) -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers), b""))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        prefix = (query.get("prefix") or [""])[0]
        listed = [k for k in self.BUCKET if k.startswith(prefix)]
        keys = "".join(f"<Contents><Key>{k}</Key><Size>1</Size></Contents>" for k in listed)
        self._reply(
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>backups</Name><Prefix>{prefix}</Prefix><KeyCount>{len(listed)}</KeyCount>"
            f"{keys}<IsTruncated>false</IsTruncated></ListBucketResult>"
        )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append(("POST", self.path, dict(self.headers), body))
        self._reply('<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></DeleteResult>')

    def log_message(self, *args: object) -> None:
        pass


def test_s3_objects_are_deleted_in_one_batch_signed_with_the_session_token() -> None:
    server = HTTPServer(("127.0.0.1", 0), _FakeS3)
    server.socket.setblocking(False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeS3.seen = []
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        secret = {
            "AWS_ACCESS_KEY_ID": "AKID",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_SESSION_TOKEN": "sts-token-1",
        }
        spec = {"endpoint": endpoint, "bucket": "backups", "prefix": "repo", "region": "eu-west-1"}
        assert wipe_out(repo(s3=spec), secret) == 3
    finally:
        server.shutdown()
    methods = [(m, path.split("?")[0]) for m, path, _, _ in _FakeS3.seen]
    # one listing per restic folder, one batch delete
    assert methods == [("GET", "/backups")] * 5 + [("POST", "/backups")]
    for _, _, headers, _ in _FakeS3.seen:
        assert headers.get("X-Amz-Security-Token") == "sts-token-1"
        assert "Credential=AKID/" in headers["Authorization"]
        assert "/eu-west-1/s3/aws4_request" in headers["Authorization"]
    deleted = _FakeS3.seen[-1][3].decode()
    for key in ("repo/config", "repo/keys/1", "repo/data/00/2"):
        assert f"<Key>{key}</Key>" in deleted
    for key in ("repo/notes.txt", "other/data/x"):  # not restic's, or not this repository's
        assert f"<Key>{key}</Key>" not in deleted


class _FakeRest(BaseHTTPRequestHandler):
    """A REST backend whose listings ``answer`` says, recording what it was asked."""

    answer: ClassVar[tuple[int, dict[str, str], bytes]] = (200, {}, b"[]")
    seen: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def _handle(self) -> None:
        self.seen.append((self.command, self.path, dict(self.headers)))
        status, headers, body = self.answer if self.command == "GET" else (200, {}, b"")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rest() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _FakeRest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeRest.seen = []
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_redirect_is_not_followed(rest: str) -> None:
    _FakeRest.answer = (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")
    with pytest.raises(WipeError, match="HTTP 302"):
        wipe_out(repo(rest={"url": f"http://{rest}/repo/"}), {})
    assert [path for _, path, _ in _FakeRest.seen] == ["/repo/data/"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>not restic</html>", "not JSON"),
        (b'{"a": 1}', "not a restic REST listing"),
        (b'[{"name": "../../etc"}]', "not a restic file"),
        (b'[{"name": "abc/def"}]', "not a restic file"),
    ],
)
def test_an_answer_that_is_not_restics_listing_is_an_error_and_deletes_nothing(
    rest: str, body: bytes, words: str
) -> None:
    _FakeRest.answer = (200, {}, body)
    with pytest.raises(WipeError, match=words):
        wipe_out(repo(rest={"url": f"http://{rest}/repo/"}), {})
    assert all(method == "GET" for method, _, _ in _FakeRest.seen)


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(rest: str) -> None:
    _FakeRest.answer = (200, {}, b'[{"name": "0a1b"}]')
    assert wipe_out(repo(rest={"url": f"http://alice:s%40cret@{rest}/repo/"}), {}) == 6
    token = base64.b64encode(b"alice:s@cret").decode()
    assert {h.get("Authorization") for _, _, h in _FakeRest.seen} == {f"Basic {token}"}
    assert ("DELETE", "/repo/config") in [(m, p) for m, p, _ in _FakeRest.seen]
    _FakeRest.answer = (500, {}, b"")
    with pytest.raises(WipeError) as raised:
        wipe_out(repo(rest={"url": f"http://alice:s%40cret@{rest}/repo/"}), {})
    assert "cret" not in str(raised.value)
    assert "alice" not in str(raised.value)
