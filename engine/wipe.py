"""Deleting a repository's data from its backend (a Repository with ``wipeOut: true`` being
deleted). restic has no command for it, so this speaks the backend's own protocol: restic's REST
protocol (list each file type, DELETE each file, then the config) and S3 (ListObjectsV2 under the
prefix, DeleteObject each, signed with AWS Signature V4). Local repositories are never wiped
(their volume is not the operator's to reach); other backends are refused with a clear error.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from api.repository import Repository

log = logging.getLogger(__name__)
WIPEABLE = ("rest", "s3")
REST_TYPES = ("data", "index", "keys", "locks", "snapshots")
_TIMEOUT = 30.0
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class WipeError(RuntimeError):
    """The backend refused or could not be reached; says which object and why."""


def can_wipe(repo: Repository) -> bool:
    return repo.spec.backend.kind() in WIPEABLE


def _context(secret: Mapping[str, str], insecure: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if secret.get("CA_CERT_DATA"):
        context.load_verify_locations(cadata=secret["CA_CERT_DATA"])
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _request(url: str, headers: dict[str, str], method: str = "GET") -> urllib.request.Request:
    if urlsplit(url).scheme not in ("http", "https"):
        raise WipeError(f"{_display(url)}: only http and https backends can be wiped out")
    return urllib.request.Request(url, headers=headers, method=method)  # noqa: S310 - checked above


def _send(request: urllib.request.Request, context: ssl.SSLContext) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT, context=context) as response:  # noqa: S310 - the Repository's own backend
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and request.get_method() == "DELETE":
            return b""
        raise WipeError(
            f"{request.get_method()} {_display(request.full_url)}: HTTP {exc.code}"
        ) from None
    except OSError as exc:
        raise WipeError(f"{request.get_method()} {_display(request.full_url)}: {exc}") from None


def _display(url: str) -> str:
    """The URL without credentials or query, for messages."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc, query="").geturl()


def wipe_out(repo: Repository, secret: Mapping[str, str]) -> int:
    """Delete everything of the repository; how many objects were deleted."""
    kind = repo.spec.backend.kind()
    if kind == "rest" and repo.spec.backend.rest is not None and repo.spec.backend.rest.url:
        return _wipe_rest(repo.spec.backend.rest.url, secret)
    if kind == "s3" and repo.spec.backend.s3 is not None:
        s3 = repo.spec.backend.s3
        target = S3Target(
            endpoint=s3.endpoint or "https://s3.amazonaws.com",
            bucket=s3.bucket,
            prefix=s3.prefix or "",
            region=s3.region or secret.get("AWS_DEFAULT_REGION") or "us-east-1",
        )
        return _wipe_s3(target, secret, insecure=bool(s3.insecure_tls))
    raise WipeError(f"wipeOut is not supported for the {kind} backend; its data is kept")


# -- restic's REST protocol --------------------------------------------------------------------


def _wipe_rest(url: str, secret: Mapping[str, str]) -> int:
    base = url.rstrip("/")
    context = _context(secret)
    headers = {"Accept": "application/vnd.x.restic.rest.v2"}
    user, password = secret.get("REST_SERVER_USERNAME", ""), secret.get("REST_SERVER_PASSWORD", "")
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    deleted = 0
    for kind in REST_TYPES:
        listing = _send(_request(f"{base}/{kind}/", headers), context)
        entries = json.loads(listing or b"[]")
        for entry in entries:
            name = entry["name"] if isinstance(entry, dict) else str(entry)
            _send(_request(f"{base}/{kind}/{name}", headers, "DELETE"), context)
            deleted += 1
    _send(_request(f"{base}/config", headers, "DELETE"), context)
    log.info("wiped out %d objects and the config of %s", deleted, _display(base))
    return deleted + 1


# -- S3 ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Target:
    endpoint: str
    bucket: str
    prefix: str
    region: str


def _sign(
    method: str,
    url: str,
    *,
    region: str,
    access_key: str,
    secret_key: str,
    now: dt.datetime,
) -> dict[str, str]:
    """AWS Signature Version 4 headers for a request with an empty body."""
    parts = urlsplit(url)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    query = "&".join(sorted(q for q in parts.query.split("&") if q))
    host = parts.netloc
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            query,
            f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n",
            "host;x-amz-content-sha256;x-amz-date",
            payload,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": stamp,
        "x-amz-content-sha256": payload,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
        ),
    }


def _s3_request(
    method: str, url: str, target: S3Target, secret: Mapping[str, str]
) -> urllib.request.Request:
    headers = _sign(
        method,
        url,
        region=target.region,
        access_key=secret.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=secret.get("AWS_SECRET_ACCESS_KEY", ""),
        now=dt.datetime.now(dt.UTC),
    )
    return _request(url, headers, method)


def _wipe_s3(target: S3Target, secret: Mapping[str, str], *, insecure: bool) -> int:
    endpoint = target.endpoint if "://" in target.endpoint else f"https://{target.endpoint}"
    base = f"{endpoint.rstrip('/')}/{quote(target.bucket)}"
    prefix = target.prefix.strip("/")
    context = _context(secret, insecure)
    deleted = 0
    token = ""
    while True:
        query = "list-type=2" + (f"&prefix={quote(prefix + '/', safe='')}" if prefix else "")
        if token:
            query += f"&continuation-token={quote(token, safe='')}"
        body = _send(_s3_request("GET", f"{base}?{query}", target, secret), context)
        # The Repository's own endpoint; expat refuses entity-expansion bombs.
        listing = ET.fromstring(body)  # noqa: S314
        keys = [el.text or "" for el in listing.iter(f"{_S3_NS}Key")]
        for key in keys:
            url = f"{base}/{quote(key, safe='/')}"
            _send(_s3_request("DELETE", url, target, secret), context)
            deleted += 1
        truncated = listing.findtext(f"{_S3_NS}IsTruncated") == "true"
        token = listing.findtext(f"{_S3_NS}NextContinuationToken") or ""
        if not truncated or not token:
            break
    log.info("wiped out %d objects under s3 %s/%s", deleted, target.bucket, prefix)
    return deleted
