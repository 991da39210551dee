"""Repository + Secret -> restic's repository URL, environment and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.repository import Repository
from engine.backend import BackendError, backend_config, materialize, redact_url

SECRET = {"RESTIC_PASSWORD": "pw-123456"}


def repo(**backend: Any) -> Repository:
    return Repository.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "r", "namespace": "demo"},
            "spec": {"backend": {"storageSecretName": "s", **backend}},
        }
    )


@pytest.mark.parametrize(
    ("backend", "url"),
    [
        ({"local": {"mountPath": "/safe/data", "subPath": "demo/"}}, "/safe/data/demo"),
        ({"s3": {"bucket": "b", "prefix": "/p/q/"}}, "s3:s3.amazonaws.com/b/p/q"),
        (
            {"s3": {"endpoint": "http://minio:9000/", "bucket": "b"}},
            "s3:http://minio:9000/b",
        ),
        ({"gcs": {"bucket": "b", "prefix": "p"}}, "gs:b:/p"),
        ({"azure": {"container": "c", "prefix": "p"}}, "azure:c:/p"),
        ({"swift": {"container": "c"}}, "swift:c:/"),
        ({"b2": {"bucket": "b", "prefix": "p"}}, "b2:b:p"),
        ({"rest": {"url": "https://rest:8000/repo/"}}, "rest:https://rest:8000/repo/"),
    ],
)
def test_each_backend_becomes_restics_repository_url(backend: dict[str, Any], url: str) -> None:
    assert backend_config(repo(**backend), SECRET).repository == url


def test_credentials_pass_to_restic_by_their_stash_names_and_only_for_their_backend() -> None:
    secret = {
        **SECRET,
        "AWS_ACCESS_KEY_ID": "AKIA1234",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-key",
        "AZURE_ACCOUNT_KEY": "not-for-s3",
    }
    config = backend_config(repo(s3={"bucket": "b", "region": "eu-west-1"}), secret)
    assert config.env == {
        "RESTIC_PASSWORD": "pw-123456",
        "AWS_ACCESS_KEY_ID": "AKIA1234",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-key",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert set(config.secrets) == {"pw-123456", "AKIA1234", "s3cr3t-key", "not-for-s3"}


def test_swift_takes_every_os_and_st_key() -> None:
    secret = {**SECRET, "OS_AUTH_URL": "https://keystone", "ST_KEY": "k-1234", "OTHER": "x"}
    env = backend_config(repo(swift={"container": "c"}), secret).env
    assert env["OS_AUTH_URL"] == "https://keystone"
    assert env["ST_KEY"] == "k-1234"
    assert "OTHER" not in env


def test_rest_credentials_go_into_the_url_and_are_redacted_for_display() -> None:
    secret = {**SECRET, "REST_SERVER_USERNAME": "bob", "REST_SERVER_PASSWORD": "p@ss:word"}
    config = backend_config(repo(rest={"url": "http://rest:8000/repo"}), secret)
    assert config.repository == "rest:http://bob:p%40ss%3Aword@rest:8000/repo"
    assert config.display == "rest:http://rest:8000/repo"
    assert redact_url("/local/path") == "/local/path"


def test_a_ca_bundle_and_a_gcs_key_are_written_to_private_files(tmp_path: Path) -> None:
    secret = {**SECRET, "CA_CERT_DATA": "-----BEGIN CERTIFICATE-----"}
    config = backend_config(repo(s3={"bucket": "b", "insecureTLS": True}), secret)
    env, flags = materialize(config, tmp_path / "files")
    assert flags[0] == "--insecure-tls"
    cacert = Path(flags[flags.index("--cacert") + 1])
    assert cacert.read_text() == "-----BEGIN CERTIFICATE-----"
    assert cacert.stat().st_mode & 0o777 == 0o600
    gcs = backend_config(
        repo(gcs={"bucket": "b"}), {**SECRET, "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": "{}"}
    )
    env, _ = materialize(gcs, tmp_path / "gcs")
    assert Path(env["GOOGLE_APPLICATION_CREDENTIALS"]).read_text() == "{}"


def test_a_secret_without_the_password_names_the_missing_key() -> None:
    with pytest.raises(BackendError, match="no RESTIC_PASSWORD, which the s3 backend needs"):
        backend_config(repo(s3={"bucket": "b"}), {})
