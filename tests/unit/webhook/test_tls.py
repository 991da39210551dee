"""The TLS reloader: a new pair is served only once it verified, a mixed pair never breaks a
handshake, /readyz says when the pair on disk is not the one served, and the writer publishes
certificate and key as one."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.authority import CertificateAuthority, KeyPair
from certs.files import CA_FILE, CERT_FILE, KEY_FILE, ensure_local_files, write_serving_files
from webhook.tls import CertificateReloader, context_from_pem

HANDSHAKES = 5


def test_a_renewed_certificate_is_loaded_once(tmp_path: Path) -> None:
    ensure_local_files(tmp_path)
    reloader = CertificateReloader(tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    assert reloader.load() is True
    assert reloader.load() is False  # unchanged files are not reloaded
    ensure_local_files(tmp_path, renew=True)
    assert reloader.load() is True
    assert reloader.reloads == 2
    assert reloader.not_after is not None
    assert reloader.problem() is None


def test_no_certificate_is_a_readiness_problem(tmp_path: Path) -> None:
    reloader = CertificateReloader(tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    assert reloader.load() is False
    problem = reloader.problem()
    assert problem is not None
    assert "certificate files not readable" in problem


def _issue(ca: CertificateAuthority) -> KeyPair:
    return ca.issue("localhost", dns_names=("localhost",), ip_addresses=("127.0.0.1",))


class _Server:
    """A TLS server on loopback holding the reloader's front context, as uvicorn does."""

    def __init__(self, reloader: CertificateReloader) -> None:
        self.reloader = reloader
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.errors: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.reloader.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(str(exc))

    def served(self, ca_pem: bytes) -> bytes:
        """The digest of the certificate a fresh handshake gets (it must verify)."""
        client = ssl.create_default_context(cadata=ca_pem.decode())
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert tls.recv(2) == b"ok"
        assert der is not None
        return hashlib.sha256(der).digest()


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("test-ca")


@pytest.fixture
def serving(tmp_path: Path, ca: CertificateAuthority) -> Iterator[tuple[_Server, KeyPair]]:
    first = _issue(ca)
    write_serving_files(tmp_path, first, ca.cert_pem)
    reloader = CertificateReloader(tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    assert reloader.load()
    server = _Server(reloader)
    yield server, first
    server.listener.close()


def _digest(pair: KeyPair) -> bytes:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pair.cert_pem.decode())).digest()


@pytest.mark.parametrize("first_written", [CERT_FILE, KEY_FILE])
def test_a_pair_written_file_by_file_never_breaks_a_handshake(
    tmp_path: Path,
    ca: CertificateAuthority,
    serving: tuple[_Server, KeyPair],
    first_written: str,
) -> None:
    server, old = serving
    new = _issue(ca)
    data = {CERT_FILE: new.cert_pem, KEY_FILE: new.key_pem}
    # A writer that is not atomic (a careless script, an older tool): one file, then the other.
    (tmp_path / first_written).write_bytes(data[first_written])
    assert server.reloader.load() is False  # the mixed pair is refused
    for _ in range(HANDSHAKES):
        assert server.served(ca.cert_pem) == _digest(old)
    problem = server.reloader.problem()
    assert problem is not None
    assert "not served" in problem  # /readyz fails while the disk holds a pair it cannot serve

    second = KEY_FILE if first_written == CERT_FILE else CERT_FILE
    (tmp_path / second).write_bytes(data[second])
    assert server.reloader.load() is True
    for _ in range(HANDSHAKES):
        assert server.served(ca.cert_pem) == _digest(new)
    assert server.reloader.problem() is None
    assert server.errors == []


def test_a_renewal_published_by_the_writer_is_served_on_the_next_handshake(
    tmp_path: Path, ca: CertificateAuthority, serving: tuple[_Server, KeyPair]
) -> None:
    server, _ = serving
    new = _issue(ca)
    assert write_serving_files(tmp_path, new, ca.cert_pem) is True
    assert write_serving_files(tmp_path, new, ca.cert_pem) is False  # unchanged: no write
    assert server.reloader.load() is True
    assert server.served(ca.cert_pem) == _digest(new)
    assert (tmp_path / CA_FILE).read_bytes() == ca.cert_pem
    assert len(list(tmp_path.glob("..pair-*"))) == 1  # older pairs removed


def test_a_reader_never_sees_a_mixed_pair_while_the_writer_renews(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    pairs = [_issue(ca) for _ in range(4)]
    write_serving_files(tmp_path, pairs[0], ca.cert_pem)
    reloader = CertificateReloader(tmp_path / CERT_FILE, tmp_path / KEY_FILE)
    stop = threading.Event()

    def renew() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            write_serving_files(tmp_path, pairs[i % len(pairs)], ca.cert_pem)

    writer = threading.Thread(target=renew, daemon=True)
    writer.start()
    try:
        for _ in range(200):
            cert, key = reloader._read()
            context_from_pem(cert, key)  # raises ssl.SSLError for a mixed pair
    finally:
        stop.set()
        writer.join(10)


def _handshake(port: int, ca_pem: bytes, client: KeyPair | None, tmp_path: Path) -> bytes:
    """Connect presenting ``client`` (or no certificate); what the server sent, or raises."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    if client is not None:
        cert, key = tmp_path / "client.crt", tmp_path / "client.key"
        cert.write_bytes(client.cert_pem)
        key.write_bytes(client.key_pem)
        context.load_cert_chain(str(cert), str(key))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.recv(2)


@pytest.fixture
def mutual(
    tmp_path: Path, ca: CertificateAuthority
) -> Iterator[tuple[_Server, CertificateAuthority, Path]]:
    """A server requiring client certificates of ``client_ca`` (its file is returned)."""
    client_ca = CertificateAuthority.create("apiserver-client-ca")
    ca_file = tmp_path / "client-ca.crt"
    ca_file.write_bytes(client_ca.cert_pem)
    write_serving_files(tmp_path / "serving", _issue(ca), ca.cert_pem)
    reloader = CertificateReloader(
        tmp_path / "serving" / CERT_FILE,
        tmp_path / "serving" / KEY_FILE,
        client_ca_file=ca_file,
    )
    assert reloader.load()
    server = _Server(reloader)
    yield server, client_ca, ca_file
    server.listener.close()


def test_with_a_client_ca_only_a_client_certificate_it_signed_gets_through(
    tmp_path: Path,
    ca: CertificateAuthority,
    mutual: tuple[_Server, CertificateAuthority, Path],
) -> None:
    server, client_ca, _ = mutual
    apiserver = client_ca.issue("kube-apiserver", server=False, client=True)
    assert _handshake(server.port, ca.cert_pem, apiserver, tmp_path) == b"ok"
    stranger = CertificateAuthority.create("someone-else").issue(
        "kube-apiserver", server=False, client=True
    )
    for client in (None, stranger):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            # TLS 1.3 reports the refusal on the first read after the handshake
            assert _handshake(server.port, ca.cert_pem, client, tmp_path) != b"ok"


def test_a_rotated_client_ca_is_taken_with_the_next_load_and_a_broken_one_is_not(
    tmp_path: Path,
    ca: CertificateAuthority,
    mutual: tuple[_Server, CertificateAuthority, Path],
) -> None:
    server, old_ca, ca_file = mutual
    new_ca = CertificateAuthority.create("apiserver-client-ca-2")
    ca_file.write_bytes(new_ca.cert_pem)
    assert server.reloader.load() is True
    fresh = new_ca.issue("kube-apiserver", server=False, client=True)
    assert _handshake(server.port, ca.cert_pem, fresh, tmp_path) == b"ok"
    old = old_ca.issue("kube-apiserver", server=False, client=True)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        assert _handshake(server.port, ca.cert_pem, old, tmp_path) != b"ok"
    ca_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    assert server.reloader.load() is False
    assert server.reloader.problem() is not None
    assert _handshake(server.port, ca.cert_pem, fresh, tmp_path) == b"ok"  # the old one serves
