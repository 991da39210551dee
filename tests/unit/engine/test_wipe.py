"""Which repositories can be wiped out, and how a SigV4 request is signed."""

from __future__ import annotations

import threading
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
    """Enough of S3 for a wipe-out: ListObjectsV2 of three keys, then DeleteObjects."""

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
        keys = "".join(
            f"<Contents><Key>repo/{k}</Key><Size>1</Size></Contents>"
            for k in ("config", "keys/1", "data/00/2")
        )
        self._reply(
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>backups</Name><Prefix>repo/</Prefix><KeyCount>3</KeyCount>{keys}"
            "<IsTruncated>false</IsTruncated></ListBucketResult>"
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
    assert methods == [("GET", "/backups"), ("POST", "/backups")], "one listing, one batch delete"
    for _, _, headers, _ in _FakeS3.seen:
        assert headers.get("X-Amz-Security-Token") == "sts-token-1"
        assert "Credential=AKID/" in headers["Authorization"]
        assert "/eu-west-1/s3/aws4_request" in headers["Authorization"]
    deleted = _FakeS3.seen[1][3].decode()
    for key in ("repo/config", "repo/keys/1", "repo/data/00/2"):
        assert f"<Key>{key}</Key>" in deleted
