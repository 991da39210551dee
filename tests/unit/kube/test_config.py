"""Loading a kubeconfig or the pod's service account into a connection, as kubectl would."""

from __future__ import annotations

import base64
import json
import ssl
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from certs.authority import CertificateAuthority
from kube.config import (
    BasicAuth,
    ConfigError,
    ExecPlugin,
    Kubeconfig,
    StaticToken,
    TokenFile,
    in_cluster,
    kubeconfig_paths,
    load,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write(
    path: Path, clusters: list[Any], users: list[Any], contexts: list[Any], **top: Any
) -> Path:
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users}
    doc["contexts"] = contexts
    doc.update(top)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create("test-ca")


def test_client_certificate_data_and_ca_data_make_a_verifying_tls_context(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    pair = authority.issue("admin", server=False, client=True)
    config = _write(
        tmp_path / "config",
        [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": _b64(authority.cert_pem),
                },
            }
        ],
        [
            {
                "name": "u",
                "user": {
                    "client-certificate-data": _b64(pair.cert_pem),
                    "client-key-data": _b64(pair.key_pem),
                },
            }
        ],
        [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
        **{"current-context": "x"},
    )
    conn = Kubeconfig.read([config], explicit=True).connection()
    assert conn.server == "https://127.0.0.1:6443"
    assert conn.namespace == "team"
    assert conn.ssl_context is not None
    assert conn.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert conn.ssl_context.check_hostname
    assert conn.credentials.headers() == {}
    assert len(conn.ssl_context.get_ca_certs()) == 1
    assert not list(Path("/tmp").glob("stash-kube-*")), "the pair's files are removed at once"


def test_relative_file_paths_are_relative_to_the_kubeconfig_that_names_them(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(authority.cert_pem)
    (tmp_path / "pki" / "token").write_text("from-a-file\n")
    config = _write(
        tmp_path / "config",
        [
            {
                "name": "c",
                "cluster": {"server": "https://k:1", "certificate-authority": "pki/ca.crt"},
            }
        ],
        [{"name": "u", "user": {"tokenFile": "pki/token"}}],
        [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        **{"current-context": "x"},
    )
    conn = Kubeconfig.read([config], explicit=True).connection()
    assert conn.credentials.headers() == {"Authorization": "Bearer from-a-file"}
    assert conn.namespace == "default"


def test_several_kubeconfig_files_merge_with_the_first_definition_winning(tmp_path: Path) -> None:
    first = _write(
        tmp_path / "a",
        [{"name": "c", "cluster": {"server": "http://first:1"}}],
        [{"name": "u", "user": {"token": "first"}}],
        [],
    )
    second = _write(
        tmp_path / "b",
        [{"name": "c", "cluster": {"server": "http://second:1"}}],
        [{"name": "u", "user": {"token": "second"}}],
        [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        **{"current-context": "x"},
    )
    paths = kubeconfig_paths(environ={"KUBECONFIG": f"{first}:{tmp_path / 'gone'}:{second}"})
    conn = Kubeconfig.read(paths, explicit=False).connection()
    assert conn.server == "http://first:1"
    assert conn.ssl_context is None
    assert conn.credentials == StaticToken("first")


def test_basic_auth_and_the_named_context_are_used(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "config",
        [{"name": "c", "cluster": {"server": "http://k:1"}}],
        [{"name": "u", "user": {"username": "ann", "password": "pw"}}],
        [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
    )
    conn = Kubeconfig.read([config], explicit=True).connection("x")
    assert conn.credentials == BasicAuth("ann", "pw")
    assert conn.credentials.headers()["Authorization"] == "Basic " + _b64(b"ann:pw")
    assert "pw" not in repr(conn.credentials)


@pytest.mark.parametrize(
    ("user", "cluster", "context", "words"),
    [
        ({"auth-provider": {"name": "gcp"}}, {}, "x", "auth-provider 'gcp' is not supported"),
        ({}, {"proxy-url": "http://proxy:3128"}, "x", "proxy-url is not supported"),
        ({}, {}, "elsewhere", "no context 'elsewhere'"),
        ({"client-certificate-data": _b64(b"x")}, {}, "x", "needs both"),
        ({}, {"certificate-authority": "/nonexistent/ca"}, "x", "certificate-authority"),
    ],
)
def test_an_unusable_kubeconfig_is_refused_with_the_reason(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], context: str, words: str
) -> None:
    config = _write(
        tmp_path / "config",
        [{"name": "c", "cluster": {"server": "https://k:1", **cluster}}],
        [{"name": "u", "user": user}],
        [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    )
    with pytest.raises(ConfigError, match=words):
        Kubeconfig.read([config], explicit=True).connection(context)


def test_an_explicit_kubeconfig_that_is_missing_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(str(tmp_path / "absent"))


def test_no_kubeconfig_and_no_pod_says_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match=r"no kubeconfig at .*not in a pod"):
        load()


def test_in_cluster_reads_the_service_account_and_rereads_a_rotated_token(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    (tmp_path / "token").write_text("one")
    (tmp_path / "ca.crt").write_bytes(authority.cert_pem)
    (tmp_path / "namespace").write_text("apps")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    conn = in_cluster(env, tmp_path)
    assert conn.server == "https://[fd00::1]:6443"
    assert conn.namespace == "apps"
    assert isinstance(conn.credentials, TokenFile)

    now = [0.0]
    tokens = TokenFile(tmp_path / "token", clock=lambda: now[0])
    assert tokens.headers() == {"Authorization": "Bearer one"}
    (tmp_path / "token").write_text("two")
    now[0] = 30.0
    assert tokens.headers() == {"Authorization": "Bearer one"}, "read at most once a minute"
    now[0] = 61.0
    assert tokens.headers() == {"Authorization": "Bearer two"}
    (tmp_path / "token").unlink()
    now[0] = 200.0
    assert tokens.headers() == {"Authorization": "Bearer two"}, "a vanished file keeps the last"


def test_in_cluster_without_the_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster({}, tmp_path)


def _plugin(tmp_path: Path, status: dict[str, Any]) -> Path:
    script = tmp_path / "plugin"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert info['spec']['interactive'] is False\n"
        "count = os.path.join(os.path.dirname(sys.argv[0]), 'runs')\n"
        "with open(count, 'a') as f: f.write(os.environ.get('GREETING', '') + '\\n')\n"
        f"print(json.dumps({{'kind': 'ExecCredential', 'status': {json.dumps(status)}}}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_an_exec_plugin_runs_once_and_again_only_when_its_token_expires(tmp_path: Path) -> None:
    _plugin(tmp_path, {"token": "t1", "expirationTimestamp": "2030-01-01T00:00:00Z"})
    config = _write(
        tmp_path / "config",
        [{"name": "c", "cluster": {"server": "http://k:1"}}],
        [
            {
                "name": "u",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "./plugin",
                        "env": [{"name": "GREETING", "value": "hi"}],
                    }
                },
            }
        ],
        [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    )
    conn = Kubeconfig.read([config], explicit=True).connection("x")
    assert isinstance(conn.credentials, ExecPlugin)
    assert conn.credentials.headers() == {"Authorization": "Bearer t1"}
    assert conn.credentials.headers() == {"Authorization": "Bearer t1"}
    assert (tmp_path / "runs").read_text() == "hi\n", "one run while the token is valid"

    expired = ExecPlugin({"command": str(tmp_path / "plugin")}, tmp_path, clock=lambda: 2e9)
    expired.headers()
    expired.headers()
    assert (tmp_path / "runs").read_text().count("\n") == 3, "an expired token runs it again"


def test_an_exec_plugin_that_fails_says_its_own_last_words(tmp_path: Path) -> None:
    script = tmp_path / "plugin"
    script.write_text("#!/bin/sh\necho 'please log in' >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(ConfigError, match="exited 3: please log in"):
        ExecPlugin({"command": str(script)}, tmp_path).headers()


def test_an_exec_plugin_may_hand_out_a_client_certificate(
    tmp_path: Path, authority: CertificateAuthority
) -> None:
    pair = authority.issue("admin", server=False, client=True)
    _plugin(
        tmp_path,
        {
            "clientCertificateData": pair.cert_pem.decode(),
            "clientKeyData": pair.key_pem.decode(),
        },
    )
    config = _write(
        tmp_path / "config",
        [{"name": "c", "cluster": {"server": "https://k:1"}}],
        [{"name": "u", "user": {"exec": {"command": str(tmp_path / "plugin")}}}],
        [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    )
    conn = Kubeconfig.read([config], explicit=True).connection("x")
    assert conn.credentials.headers() == {}


def test_the_connection_acts_in_its_contexts_namespace_or_default(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "config",
        [{"name": "local", "cluster": {"server": "https://127.0.0.1:6443"}}],
        [{"name": "me", "user": {"token": "t"}}],
        [
            {"name": "work", "context": {"cluster": "local", "user": "me", "namespace": "demo"}},
            {"name": "bare", "context": {"cluster": "local", "user": "me"}},
        ],
        **{"current-context": "work"},
    )
    assert Kubeconfig.read([config], explicit=True).connection().namespace == "demo"
    assert Kubeconfig.read([config], explicit=True).connection("bare").namespace == "default"
