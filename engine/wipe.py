"""Deleting a repository's data from its backend (a Repository with ``wipeOut: true`` being
deleted). restic has no command for it, so this speaks the backend's own protocol: restic's REST
protocol (list each file type, DELETE each file, then the config) and S3 through the MinIO
client (list under the prefix, delete in batches; session tokens, path and virtual-host style).
Local repositories are never wiped (their volume is not the operator's to reach); other backends
are refused with a clear error.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import urllib3

from api.repository import Repository

if TYPE_CHECKING:
    from minio import Minio

log = logging.getLogger(__name__)
WIPEABLE = ("rest", "s3")
REST_TYPES = ("data", "index", "keys", "locks", "snapshots")
_TIMEOUT = 30.0


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


def _s3_client(target: S3Target, secret: Mapping[str, str], *, insecure: bool) -> Minio:
    from minio import Minio  # noqa: PLC0415 - only a wipe-out pays for the S3 client (6 MB)

    endpoint = target.endpoint if "://" in target.endpoint else f"https://{target.endpoint}"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WipeError(f"{_display(endpoint)}: only http and https backends can be wiped out")
    http = urllib3.PoolManager(
        ssl_context=_context(secret, insecure),
        cert_reqs="CERT_NONE" if insecure else "CERT_REQUIRED",
        timeout=urllib3.Timeout(connect=10, read=_TIMEOUT),
        retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        parts.netloc.rpartition("@")[2],
        access_key=secret.get("AWS_ACCESS_KEY_ID") or None,
        secret_key=secret.get("AWS_SECRET_ACCESS_KEY") or None,
        # STS / IRSA credentials: restic is given the token, so the wipe must be too.
        session_token=secret.get("AWS_SESSION_TOKEN") or None,
        secure=parts.scheme == "https",
        region=target.region,
        http_client=http,
    )


def _wipe_s3(target: S3Target, secret: Mapping[str, str], *, insecure: bool) -> int:
    """Every object under the prefix, deleted in batches (S3 DeleteObjects, up to 1,000 keys a
    request) by the MinIO client: path or virtual-host style as the endpoint needs, signed
    with the session token when there is one."""
    from minio.deleteobjects import DeleteObject  # noqa: PLC0415 - see _s3_client
    from minio.error import S3Error  # noqa: PLC0415

    client = _s3_client(target, secret, insecure=insecure)
    prefix = target.prefix.strip("/")
    where = f"s3 {target.bucket}/{prefix}"
    deleted = 0

    def keys() -> Iterator[DeleteObject]:
        nonlocal deleted
        listed = client.list_objects(
            target.bucket, prefix=f"{prefix}/" if prefix else None, recursive=True
        )
        for obj in listed:
            if obj.object_name:
                deleted += 1
                yield DeleteObject(obj.object_name)

    try:
        for failure in client.remove_objects(target.bucket, keys()):
            raise WipeError(f"{where}: deleting {failure.name}: {failure.code} {failure.message}")
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            log.info("wipe out: bucket %s does not exist; nothing to delete", target.bucket)
            return 0
        raise WipeError(f"{where}: {exc.code}: {exc.message}") from None
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        raise WipeError(f"{where}: {exc}") from None
    log.info("wiped out %d objects under %s", deleted, where)
    return deleted
