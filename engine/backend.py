"""Where restic finds a Repository: its ``RESTIC_REPOSITORY`` URL, the backend's environment and
flags, built from the Repository's ``spec.backend`` and the storage Secret's keys.

Pure, apart from ``materialize`` writing the files some backends need (a CA bundle, a GCS key)
into a private directory. Every Secret value ends up in ``BackendConfig.secrets`` so that
whatever prints restic's output can redact them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from api.repository import (
    AzureSpec,
    B2Spec,
    GCSSpec,
    LocalSpec,
    Repository,
    RestServerSpec,
    S3Spec,
    SwiftSpec,
)

PASSWORD_KEY = "RESTIC_PASSWORD"  # noqa: S105 - the key's name, not a password
CA_CERT_KEY = "CA_CERT_DATA"
GCS_KEY = "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"
# Secret keys passed to restic as they are, per backend (Stash's names are restic's names).
_PASSTHROUGH = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"),
    "gcs": ("GOOGLE_PROJECT_ID",),
    "azure": ("AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY"),
    "b2": ("B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"),
    "swift": (),  # every OS_* and ST_* key, below
    "rest": (),
    "local": (),
}


class BackendError(ValueError):
    """The Repository or its Secret cannot be turned into a restic repository; says why."""


@dataclass(frozen=True)
class BackendConfig:
    """Everything restic needs to open one repository."""

    repository: str
    env: Mapping[str, str]
    flags: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # flag placeholder -> content

    @property
    def display(self) -> str:
        """The repository URL with any credentials removed, for messages."""
        return redact_url(self.repository)


def redact_url(url: str) -> str:
    prefix, sep, rest = url.partition(":")
    if not sep or "://" not in rest:
        return url
    parts = urlsplit(rest)
    if parts.password is None and parts.username is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return f"{prefix}:{urlunsplit(parts._replace(netloc=netloc))}"


def _join(*parts: str | None) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _require(data: Mapping[str, str], key: str, backend: str) -> str:
    value = data.get(key, "")
    if not value:
        raise BackendError(f"the storage Secret has no {key}, which the {backend} backend needs")
    return value


@dataclass
class _Parts:
    env: dict[str, str]
    flags: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def connections(self, backend: str, count: int | None) -> None:
        if count:
            self.flags += ["-o", f"{backend}.connections={count}"]


def _local(spec: LocalSpec, secret: Mapping[str, str], parts: _Parts) -> str:
    return "/" + _join(spec.mount_path, spec.sub_path)


def _s3(spec: S3Spec, secret: Mapping[str, str], parts: _Parts) -> str:
    if spec.region:
        parts.env["AWS_DEFAULT_REGION"] = spec.region
    if spec.insecure_tls:
        parts.flags.append("--insecure-tls")
    endpoint = (spec.endpoint or "s3.amazonaws.com").rstrip("/")
    return f"s3:{endpoint}/{_join(spec.bucket, spec.prefix)}"


def _gcs(spec: GCSSpec, secret: Mapping[str, str], parts: _Parts) -> str:
    if secret.get(GCS_KEY):
        parts.files["GOOGLE_APPLICATION_CREDENTIALS"] = secret[GCS_KEY]
    parts.connections("gs", spec.max_connections)
    return f"gs:{spec.bucket}:/{_join(spec.prefix)}"


def _azure(spec: AzureSpec, secret: Mapping[str, str], parts: _Parts) -> str:
    parts.connections("azure", spec.max_connections)
    return f"azure:{spec.container}:/{_join(spec.prefix)}"


def _swift(spec: SwiftSpec, secret: Mapping[str, str], parts: _Parts) -> str:
    parts.env.update({k: v for k, v in secret.items() if k.startswith(("OS_", "ST_")) and v})
    return f"swift:{spec.container}:/{_join(spec.prefix)}"


def _b2(spec: B2Spec, secret: Mapping[str, str], parts: _Parts) -> str:
    parts.connections("b2", spec.max_connections)
    return f"b2:{spec.bucket}:{_join(spec.prefix)}"


def _rest(spec: RestServerSpec, secret: Mapping[str, str], parts: _Parts) -> str:
    if not spec.url:
        raise BackendError("spec.backend.rest.url: the REST server's URL is required")
    return "rest:" + _with_credentials(spec.url, secret)


_URLS: dict[str, Callable[[Any, Mapping[str, str], _Parts], str]] = {
    "local": _local,
    "s3": _s3,
    "gcs": _gcs,
    "azure": _azure,
    "swift": _swift,
    "b2": _b2,
    "rest": _rest,
}


def backend_config(repo: Repository, secret: Mapping[str, str]) -> BackendConfig:
    """The restic settings for ``repo`` with credentials from its storage Secret's data."""
    backend = repo.spec.backend
    kind = backend.kind()
    parts = _Parts(env={PASSWORD_KEY: _require(secret, PASSWORD_KEY, kind)})
    parts.env.update({k: secret[k] for k in _PASSTHROUGH[kind] if secret.get(k)})
    url = _URLS[kind](getattr(backend, kind), secret, parts)
    if secret.get(CA_CERT_KEY) and kind in ("s3", "rest", "swift"):
        parts.files["--cacert"] = secret[CA_CERT_KEY]
    secrets = sorted({v for v in secret.values() if v and len(v) >= 4}, key=len, reverse=True)
    return BackendConfig(url, parts.env, tuple(parts.flags), tuple(secrets), parts.files)


def _with_credentials(url: str, secret: Mapping[str, str]) -> str:
    user = secret.get("REST_SERVER_USERNAME", "")
    password = secret.get("REST_SERVER_PASSWORD", "")
    if not user:
        return url
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise BackendError(f"rest backend url {url!r} is not an http(s) URL")
    netloc = quote(user, safe="")
    if password:
        netloc += ":" + quote(password, safe="")
    netloc += "@" + parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def materialize(config: BackendConfig, directory: Path) -> tuple[dict[str, str], list[str]]:
    """Write the config's files under ``directory`` (mode 0600); the env and flags naming them."""
    env, flags = dict(config.env), list(config.flags)
    if config.files:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, content in config.files.items():
        path = directory / name.lstrip("-").lower().replace("_", "-")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        if name.startswith("--"):
            flags += [name, str(path)]
        else:
            env[name] = str(path)
    return env, flags
