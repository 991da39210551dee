"""The real services beside the control plane, on loopback: the Prometheus Pushgateway and a
Prometheus scraping it, rclone serving restic's REST protocol or S3 from a directory, and a
PostgreSQL server.

Each is a child process that dies with its parent, started on a free port and returned once it
answers; ``stop`` ends it. Binaries come from Debian (pushgateway, prometheus, postgresql) or
the build cache (rclone); a missing one is a ``StartError`` saying what to install, never a
silent skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devcluster.cluster import StartError, _die_with_parent, free_port

READY_TIMEOUT = 30.0
POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _binary(name: str, hint: str, *extra_dirs: Path) -> str:
    for directory in extra_dirs:
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise StartError(f"{name} not found: {hint}")
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Service:
    """One child process serving on ``port``."""

    name: str
    command: list[str]
    port: int
    log_path: Path
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    detached: bool = False  # outlives this process (stash demo --keep)
    process: subprocess.Popen[bytes] | None = None

    def start(self, ready: str | None = None) -> Service:
        """Start and wait until the port answers (and ``ready``, an HTTP path, returns 200)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                user=self.user,
                start_new_session=self.detached,
                preexec_fn=None if self.detached else _die_with_parent,  # noqa: PLW1509 - prctl only
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if _port_open(self.port) and (ready is None or self._http_ok(ready)):
                return self
            time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(errors="replace").splitlines()[-10:]
        raise StartError(f"{self.name} did not come up on port {self.port}:\n" + "\n".join(tail))

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def pushgateway(state: Path, port: int | None = None, *, detached: bool = False) -> Service:
    binary = _binary(
        "prometheus-pushgateway", "apt-get install prometheus-pushgateway (scripts/setup does)"
    )
    port = port or free_port()
    # Debian's build persists to /var/lib/prometheus/pushgateway.data by default: every
    # gateway started here would load what earlier ones held. In memory only, as in the pod.
    command = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        "--persistence.file=",
        "--log.level=warn",
    ]
    service = Service("pushgateway", command, port, state / "pushgateway.log", detached=detached)
    return service.start("/-/ready")


def prometheus(
    state: Path, scrape_configs: list[dict[str, Any]], rule_files: list[Path]
) -> Service:
    """A Prometheus (Debian's) on loopback scraping ``scrape_configs`` every second and
    evaluating ``rule_files``; its data under ``state``."""
    binary = _binary("prometheus", "apt-get install prometheus (scripts/setup does)")
    port = free_port()
    state.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape_configs,
    }
    (state / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        binary,
        f"--config.file={state / 'prometheus.yml'}",
        f"--storage.tsdb.path={state / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return Service("prometheus", command, port, state / "prometheus.log").start("/-/ready")


def rclone_rest(
    rclone: Path,
    root: Path,
    state: Path,
    user: str = "",
    password: str = "",
    *,
    bwlimit: str = "",
) -> Service:
    """rclone serving restic's REST protocol (what rest-server does) from ``root``;
    ``bwlimit`` (rclone's, ``100k`` say) makes it a slow backend."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    command = [str(rclone), "serve", "restic", str(root), "--addr", f"127.0.0.1:{port}"]
    if user:
        command += ["--user", user, "--pass", password]
    if bwlimit:
        command += ["--bwlimit", bwlimit]
    return Service("rclone-rest", command, port, state / "rclone-rest.log").start()


def rclone_s3(rclone: Path, root: Path, state: Path, access_key: str, secret_key: str) -> Service:
    """rclone serving S3 from ``root`` (each top-level directory is a bucket)."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    command = [
        str(rclone),
        "serve",
        "s3",
        str(root),
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{access_key},{secret_key}",
    ]
    return Service("rclone-s3", command, port, state / "rclone-s3.log").start()


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster in ``data_dir`` (run as the ``postgres`` user when root:
    PostgreSQL refuses to run as root)."""

    service: Service
    bin_dir: Path
    user: str

    @property
    def port(self) -> int:
        return self.service.port

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        self.service.stop()


def postgres(state: Path) -> Postgres:
    initdb = Path(
        _binary("initdb", "apt-get install postgresql (scripts/setup does)", *POSTGRES_BIN_DIRS)
    )
    bin_dir = initdb.parent
    data = state / "pgdata"
    run_as = "postgres" if os.geteuid() == 0 else None
    if run_as:
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise StartError(
                "running as root needs the postgres user (apt-get install postgresql)"
            ) from None
        state.mkdir(parents=True, exist_ok=True)
        shutil.chown(state, run_as)
    if not (data / "PG_VERSION").is_file():
        subprocess.run(
            [str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user=run_as,
        )
    port = free_port()
    command = [
        str(bin_dir / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={state}",
        "-c",
        "fsync=off",
    ]
    service = Service("postgres", command, port, state / "postgres.log", user=run_as)
    service.start()
    return Postgres(service, bin_dir, "postgres")
