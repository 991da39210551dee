"""Deleting a repository's data from its backend (a Repository with ``wipeOut: true`` being
deleted). restic has no command for it, so this speaks the backend's own protocol: restic's REST
protocol (list each file type, DELETE each file, then the config) and S3 through the MinIO
client (list under the prefix, delete in batches; session tokens, path and virtual-host style).
Local repositories are never wiped (their volume is not the operator's to reach); other backends
are refused with a clear error.

It runs in a Job in the Repository's own namespace (``controller.jobs.wipe_job``), never in the
operator: the endpoint is the tenant's to write. Even there it deletes only what is restic's
under the Repository's own prefix (``config`` and the ``keys``, ``data``, ``index``,
``snapshots`` and ``locks`` folders; a bucket's other objects stay), follows no redirect, and
takes a listing that is not restic's as an error, never as something to retry for ever.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import urllib3

from api.repository import Repository

if TYPE_CHECKING:
    from minio import Minio

log = logging.getLogger(__name__)
WIPEABLE = ("rest", "s3")
REST_TYPES = ("data", "index", "keys", "locks", "snapshots")
RESTIC_FOLDERS = ("keys/", "data/", "index/", "snapshots/", "locks/")
_TIMEOUT = 30.0
# restic names its files by their SHA-256, in hex; the REST listing must say no more than that
_FILE_NAME = re.compile(r"^[0-9a-fA-F]{1,128}$")


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error here: a backend's answer never sends the wipe elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _send(request: urllib.request.Request, context: ssl.SSLContext) -> bytes:
    opener = urllib.request.build_opener(
        _NoRedirect(), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(request, timeout=_TIMEOUT) as response:
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


def _rest_names(listing: bytes, where: str) -> list[str]:
    """The file names of a REST listing (v2: objects with a name; v1: names); anything else
    is not restic's answer."""
    try:
        entries = json.loads(listing or b"[]")
    except ValueError:
        raise WipeError(f"{where}: the answer is not a restic REST listing (not JSON)") from None
    if not isinstance(entries, list):
        raise WipeError(f"{where}: the answer is not a restic REST listing")
    names = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not _FILE_NAME.match(name):
            raise WipeError(f"{where}: the listing names {str(name)[:40]!r}, not a restic file")
        names.append(name)
    return names


def _wipe_rest(url: str, secret: Mapping[str, str]) -> int:
    parts = urlsplit(url)
    # Credentials written into the URL (user:password@host) are sent as restic sends them.
    base = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl().rstrip("/")
    context = _context(secret)
    headers = {"Accept": "application/vnd.x.restic.rest.v2"}
    user = secret.get("REST_SERVER_USERNAME", "") or unquote(parts.username or "")
    password = secret.get("REST_SERVER_PASSWORD", "") or unquote(parts.password or "")
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    deleted = 0
    for kind in REST_TYPES:
        where = f"GET {_display(base)}/{kind}/"
        names = _rest_names(_send(_request(f"{base}/{kind}/", headers), context), where)
        for name in names:
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
        retries=urllib3.Retry(
            total=3, redirect=0, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)
        ),
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

    base = f"{prefix}/" if prefix else ""

    def keys() -> Iterator[DeleteObject]:
        """restic's files under the prefix, nothing else of the bucket (without a prefix the
        repository is the bucket's root, and the bucket may hold more than it)."""
        nonlocal deleted
        for folder in RESTIC_FOLDERS:
            for obj in client.list_objects(target.bucket, prefix=base + folder, recursive=True):
                if obj.object_name:
                    deleted += 1
                    yield DeleteObject(obj.object_name)
        deleted += 1
        yield DeleteObject(base + "config")

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


# -- the wipe Job's program (``stash wipe-out``) -------------------------------------------------


NOT_RETRIED = 2  # exit code: no retry can make it succeed (the Job fails at once)
