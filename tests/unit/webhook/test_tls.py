"""The TLS reloader serves new certificates and refuses broken ones."""

from __future__ import annotations

from pathlib import Path

from certs.files import CERT_FILE, KEY_FILE, ensure_local_files
from webhook.tls import CertificateReloader


def test_a_renewed_certificate_is_loaded_once(tmp_path: Path) -> None:
    ensure_local_files(tmp_path)
    reloader = CertificateReloader(tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    assert reloader.load() is True
    assert reloader.load() is False  # unchanged files are not reloaded
    first = reloader.not_after
    ensure_local_files(tmp_path, renew=True)
    assert reloader.load() is True
    assert reloader.reloads == 2
    assert reloader.not_after is not None
    assert first is not None
    assert reloader.problem() is None


def test_a_mismatched_pair_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    ensure_local_files(tmp_path)
    reloader = CertificateReloader(tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    reloader.load()
    other = tmp_path / "other"
    ensure_local_files(other)
    (tmp_path / KEY_FILE).write_bytes((other / KEY_FILE).read_bytes())
    assert reloader.load() is False
    assert reloader.reloads == 1
    assert reloader.problem() is None


def test_no_certificate_is_a_readiness_problem(tmp_path: Path) -> None:
    reloader = CertificateReloader(tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    assert reloader.load() is False
    assert reloader.problem() == "no certificate loaded"
