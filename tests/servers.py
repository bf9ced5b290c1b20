"""Real servers as pytest fixtures, one section each: started on a free port, always stopped and removed.

Missing Debian packages are installed when the tests run as root (as in CI's container), else the tests skip.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

APT_LOCK = Path("/tmp/lenet_exp-apt.lock")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed(name: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.endswith(" installed")


def debian_packages(*names: str) -> list[str]:
    """Install the missing ones of `names` with apt, or skip the test; returns those it installed."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"needs the Debian packages {' '.join(names)}: not root, or no apt-get")
    # pytest-xdist workers would collide on dpkg's own lock (apt fails instead of waiting), so take turns.
    with APT_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [n for n in names if not installed(n)]  # another worker may have installed them meanwhile
        if missing:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
                out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
                if out.returncode != 0:
                    pytest.skip(f"`{' '.join(command)}` failed: {(out.stderr or out.stdout)[-2000:]}")
    return missing


# --- PostgreSQL -----------------------------------------------------------------------------------

PG_LIB = Path("/usr/lib/postgresql")


def postgres_bin() -> Path | None:
    """The newest installed server's bin/ folder."""
    versions = [p for p in PG_LIB.glob("*") if re.fullmatch(r"\d+(\.\d+)?", p.name) and (p / "bin/pg_ctl").exists()]
    if not versions:
        return None
    return max(versions, key=lambda p: [int(x) for x in p.name.split(".")]) / "bin"


@dataclass
class Postgres:
    host: str
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname=database, autocommit=True, connect_timeout=10
        )

    def new_database(self, name: str) -> str:
        from psycopg import sql

        with self.connect() as conn:  # autocommit: CREATE DATABASE cannot run in a transaction
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg")
    bin_dir = postgres_bin()
    if bin_dir is None:
        fresh = debian_packages("postgresql")
        bin_dir = postgres_bin()
        if bin_dir is None:
            pytest.skip(f"the postgresql package installed no server in {PG_LIB}")
        if fresh:
            # Debian's postinst also creates a "main" cluster and starts it where no policy-rc.d forbids that.
            subprocess.run(["pg_ctlcluster", bin_dir.parent.name, "main", "stop"], capture_output=True)

    # The server refuses to run as root; as root, run it as Debian's postgres user in a folder it owns
    # (pytest's tmp_path is root's and closed to it).
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="lenet_exp-pg-")
    if os.geteuid() == 0:
        as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    data, port = Path(folder), free_port()

    def pg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        # cwd: the postgres user may not be allowed into the current directory.
        command = [*as_user, *args]
        return subprocess.run(command, cwd=data, capture_output=True, text=True, timeout=timeout)

    try:
        out = pg(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--no-sync")
        if out.returncode != 0:
            pytest.fail(f"initdb failed:\n{out.stdout}{out.stderr}")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        log = data / "server.log"
        out = pg(str(bin_dir / "pg_ctl"), "-w", "-t", "60", "-D", str(data), "-l", str(log), "-o", options, "start")
        if out.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no server.log)"
            pytest.fail(f"pg_ctl start failed:\n{out.stdout}{out.stderr}\nserver.log:\n{tail}")
        server = Postgres("127.0.0.1", port)
        with server.connect() as conn:
            conn.execute("SELECT 1")
        yield server
    finally:
        try:
            stopped = pg(str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", timeout=60)
            failed = stopped.returncode != 0
        except subprocess.TimeoutExpired:
            failed = True
        pid_file = data / "postmaster.pid"
        if failed and pid_file.exists():  # the first line is the postmaster's PID; its backends exit with it
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, IndexError, ProcessLookupError):
                pass
        shutil.rmtree(folder, ignore_errors=True)
