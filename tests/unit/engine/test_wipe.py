"""Which repositories can be wiped out, and how a SigV4 request is signed."""

from __future__ import annotations

import datetime as dt
import functools

import pytest

from engine.wipe import WipeError, _sign, can_wipe, wipe_out
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


def test_sigv4_signs_the_canonical_request_deterministically() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    sign = functools.partial(
        _sign, region="eu-west-1", access_key="AKID", secret_key="SECRET", now=now
    )
    first = sign("GET", "http://s3:9000/bucket?prefix=p%2F&list-type=2")
    again = sign("GET", "http://s3:9000/bucket?list-type=2&prefix=p%2F")
    assert first == again, "query parameters are signed in sorted order"
    assert first["x-amz-date"] == "20260102T030405Z"
    assert first["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKID/20260102/eu-west-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
    )
    other = sign("DELETE", "http://s3:9000/bucket?prefix=p%2F&list-type=2")
    assert other["Authorization"] != first["Authorization"]
