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
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytorch_lightning import Callback

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


# --- SLURM ----------------------------------------------------------------------------------------

SLURM_NODE_TIMEOUT = 30  # seconds for slurmd to register and the node to turn idle

# sacct needs slurmdbd (and a MySQL server); without it submitit cannot tell that a job ended without writing its
# result (cancelled, killed, timed out), and a hydra sweep waits for ever. This stand-in answers submitit's
# `sacct -o JobID,State,NodeList --parsable2 -j ID ...` from squeue, which keeps ended jobs for MinJobAge seconds.
SACCT = """#!/bin/sh
ids=""
while [ $# -gt 0 ]; do
    case "$1" in -j|--jobs) ids="$ids,$2"; shift ;; esac
    shift
done
echo "JobID|State|NodeList"
exec squeue -h -r -t all ${ids:+-j "${ids#,}"} -o "%i|%T|%N"
"""


@dataclass
class Slurm:
    conf: Path
    env: dict[str, str]  # os.environ, SLURM_CONF and sacct on PATH: pass it to SLURM's clients and what calls them
    partition: str = "debug"

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, srun, squeue, scontrol, ...) against this cluster."""
        out = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"`{' '.join(args)}` exited {out.returncode}:\n{out.stdout}{out.stderr}")
        return out

    def queue(self) -> list[str]:
        """The ids of the jobs squeue lists (pending, running or completing)."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()


def pids_with_env(entry: str) -> list[int]:
    """The processes (but this one) whose environment holds `entry`: the daemons, steps and jobs of one cluster."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:  # gone meanwhile
                pass
    return found


def stop_pids(pids: list[int], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL what is still alive after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while (pids := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not pids:
            return


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan stays one until init reaps it, which can take a while in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def slurm_conf(folder: Path, host: str) -> str:
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return f"""\
ClusterName=lenet-exp
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long (default 120 s) before it may start again; 5 is the least SLURM
# takes (a smaller value is refused and replaced by the default).
AuthInfo=socket={folder}/munge/munge.socket,cred_expire=5
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
# A container: no cgroups, so processes are tracked through /proc and tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
# Seconds between SIGTERM and SIGKILL (default 30): submitit's jobs ignore SIGTERM, so a requeue waits it out.
KillWait=2
MinJobAge=3600
# Look for pending jobs every second, not every minute (sched_interval) or half minute (bf_interval).
SchedulerParameters=sched_interval=1,bf_interval=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={int(memory_mb * 0.9)} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm() -> Iterator[Slurm]:
    """A real one-node cluster (munged, slurmctld, slurmd as root) in a temporary folder; its clients get `env`."""
    if os.geteuid() != 0:
        pytest.skip("a SLURM cluster needs root: slurmd runs jobs as their users")
    sbin = Path("/usr/sbin")
    if not all((sbin / d).exists() for d in ("munged", "slurmctld", "slurmd")) or not shutil.which("sbatch"):
        fresh = debian_packages("slurm-wlm", "munge")
        if "munge" in fresh:  # its postinst starts the system's munged where no policy-rc.d forbids that
            subprocess.run([sbin / "munged", "--stop"], capture_output=True)

    folder = Path(tempfile.mkdtemp(prefix="lenet_exp-slurm-"))
    munge, conf = folder / "munge", folder / "slurm.conf"
    host = socket.gethostname().split(".")[0]  # the NodeName: slurmctld wants the short name in SlurmctldHost
    # Not the variables of a SLURM job that pytest may run in: sbatch would take its options, lenet_exp its rank.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
    env |= {"SLURM_CONF": str(conf), "PATH": f"{folder}/bin{os.pathsep}{env.get('PATH', '')}"}
    cluster = Slurm(conf, env)

    def logs() -> str:
        return "".join(f"\n{p.name}:\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(folder.glob("**/*.log")))

    def start(*command: str | Path) -> None:
        # The daemons fork into the background; the env marks them and their steps' processes for the teardown.
        out = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            pytest.fail(f"`{' '.join(map(str, command))}` exited {out.returncode}:\n{out.stdout}{out.stderr}{logs()}")

    try:
        folder.chmod(0o755)  # the munge user must get through to its own subfolder
        munge.mkdir(mode=0o755)  # munged wants its socket's folder open to all, and writable by itself only
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        shutil.chown(munge, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        for sub in ("state", "spool", "bin"):
            (folder / sub).mkdir()
        (folder / "bin/sacct").write_text(SACCT)
        (folder / "bin/sacct").chmod(0o755)
        conf.write_text(slurm_conf(folder, host))
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        m = f"{munge}/munged"
        start(
            runuser,
            "-u",
            "munge",
            "--",
            sbin / "munged",
            f"--socket={munge}/munge.socket",
            f"--key-file={key}",
            f"--pid-file={m}.pid",
            f"--log-file={m}.log",
            f"--seed-file={m}.seed",
        )
        start(sbin / "slurmctld", "-f", conf)
        start(sbin / "slurmd", "-f", conf, "-N", host)
        deadline = time.monotonic() + SLURM_NODE_TIMEOUT
        while (state := cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()) != "idle":
            if time.monotonic() > deadline:
                pytest.fail(f"the node is {state!r}, not idle, after {SLURM_NODE_TIMEOUT} s{logs()}")
            time.sleep(0.5)
        yield cluster
    finally:
        if (folder / "slurmctld.pid").exists():
            cluster.run("scancel", "--user=root", check=False, timeout=30)
            deadline = time.monotonic() + 15  # the jobs get KillWait seconds between SIGTERM and SIGKILL
            while cluster.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
            cluster.run("scontrol", "shutdown", check=False, timeout=30)  # slurmctld and every slurmd
        # The env marks all this cluster's processes (not pid files: a stale one may name another process by now).
        # SLURM's first, munged last: without it slurmstepd cannot report its end, and slurmd waits for it.
        munged = (munge / "munged.pid").read_text().strip() if (munge / "munged.pid").exists() else ""
        stop_pids([pid for pid in pids_with_env(f"SLURM_CONF={conf}") if str(pid) != munged])
        stop_pids(pids_with_env(f"SLURM_CONF={conf}"))
        shutil.rmtree(folder, ignore_errors=True)


# --- MLflow ---------------------------------------------------------------------------------------

MLFLOW_START_TIMEOUT = 90  # seconds for `mlflow server` to create its tables and answer /health
# The full mlflow package, in a virtual environment of its own beside the tests' one (make setup): it brings SciPy,
# which this one leaves out (torchmetrics imports scipy.signal into every training process where it is installed).
MLFLOW_SERVER = Path(sys.prefix) / "mlflow-server"


@dataclass
class MlflowServer:
    uri: str  # http://127.0.0.1:<port>
    artifacts: Path  # the server's --artifacts-destination
    pid: int  # its process group: `mlflow server`, gunicorn or uvicorn and their workers

    def stop(self) -> None:
        """Stop every process of the server (SIGTERM, then SIGKILL after 15 s); done when /health stops answering."""
        stop_group(self.pid)


def answers_health(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def stop_group(pid: int) -> None:
    """SIGTERM the process group `pid`, SIGKILL what is left of it after 15 s."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)  # the group outlives its leader while a worker is left
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            try:  # reap the leader if it is our child, so that the group can empty
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)


@contextmanager
def running_mlflow_server(folder: Path, port: int | None = None) -> Iterator[MlflowServer]:
    """A real tracking server (`mlflow server` of the full mlflow package, from the virtual environment of its
    own that make setup makes, `MLFLOW_SERVER`) with its SQLite store and its proxied artifacts in `folder` (a
    second one on the same folder and port finds the first's runs), one worker; stopped on leaving, also when the
    test failed."""
    executable = MLFLOW_SERVER / "bin" / "mlflow"
    if not executable.exists():
        pytest.skip(f"needs the full mlflow package's `mlflow server` in {MLFLOW_SERVER}: make setup")
    port = port or free_port()
    log = folder / "server.log"
    store = f"sqlite:///{folder / 'mlflow.db'}"
    artifacts = folder / "artifacts"
    command = [
        executable,
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        artifacts,
    ]
    # No job runner (MLflow's GenAI jobs, eight more processes): it doubles the start-up on two cores. Its venv is
    # installed without compiled bytecode (compiling all of it takes 20 s of CPU): the first start writes the
    # bytecode of what a server imports, even where PYTHONDONTWRITEBYTECODE is set (as on CI's machines), and the
    # next starts read it (13 s of CPU to answer /health without it, 5 s with it, on 2 cores).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with log.open("ab") as out:  # a process group of its own: stopping it stops uvicorn's worker with it
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env, start_new_session=True
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", artifacts, process.pid)
    try:
        deadline = time.monotonic() + MLFLOW_START_TIMEOUT
        while not answers_health(server.uri):
            if process.poll() is not None or time.monotonic() > deadline:
                what = (
                    f"exited {process.returncode}" if process.poll() is not None else f"after {MLFLOW_START_TIMEOUT} s"
                )
                pytest.fail(
                    f"mlflow server did not answer /health ({what}):\n{log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class StopServerAt(Callback):
    """A Lightning callback for a run under test (``+callbacks.stop._target_=servers.StopServerAt``, with ``tests/``
    on PYTHONPATH): when epoch ``epoch`` (from 1) starts, stops the server of process group ``pid`` and waits until
    its ``port`` refuses connections, as a server that goes away does."""

    def __init__(self, pid: int, port: int, epoch: int) -> None:
        self.pid, self.port, self.epoch = pid, port, epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 != self.epoch:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                except OSError:
                    return
                time.sleep(0.1)


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[MlflowServer]:
    """A real tracking server for the tests of a module, in a temporary folder (see `running_mlflow_server`)."""
    folder = Path(tempfile.mkdtemp(prefix="lenet_exp-mlflow-"))
    try:
        with running_mlflow_server(folder) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)
