"""A real PostgreSQL server from Debian's binaries (`apt-get install postgresql`), for the world and for tests.

    server = PostgresServer(state_dir / "postgres", log_dir=state_dir / "logs", world_id=world_id).start()
    server.admin_url        # postgresql+asyncpg://voxfleet:<password>@127.0.0.1:<port>/postgres
    create_database(server.admin_url, "t_abc")  ->  the URL of the new database
    server.stop()

`initdb` into the data folder (password authentication on TCP with a generated password, kept in the folder so a
restart or another process finds it), then `postgres` on 127.0.0.1 on a free port with its Unix socket in the
state folder, ready once it accepts a query. Tuned for throwaway test data: no fsync.

PostgreSQL refuses to run as root. When this process is root (CI, containers), the server runs as Debian's
`postgres` user, and its data folder lives in a folder of its own under /tmp (the state folder of a root-owned
test run is not readable by another user); the state folder keeps a `postgres.json` naming it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import processes
from .processes import Server, ServerFailed

ADMIN_USER = "voxfleet"
SEARCH_DIRS = ("/usr/lib/postgresql",)  # Debian: /usr/lib/postgresql/<major>/bin
INSTALL_HINT = ("PostgreSQL's server binaries (initdb, postgres) were not found: install Debian's server with"
                " `apt-get install postgresql` (make setup does), or name their folder in VOXFLEET_POSTGRES_BIN_DIR")
SOCKET_PATH_LIMIT = 100  # a Unix socket path must fit in 107 bytes; ".s.PGSQL.<port>" needs 16 of them


def find_bin_dir() -> Path:
    """The folder holding initdb and postgres: $VOXFLEET_POSTGRES_BIN_DIR, else Debian's newest, else PATH."""
    configured = os.environ.get("VOXFLEET_POSTGRES_BIN_DIR")
    candidates = [Path(configured)] if configured else []
    for base in SEARCH_DIRS:
        versions = sorted(Path(base).glob("*/bin"), key=lambda p: _major(p.parent.name), reverse=True)
        candidates += versions
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise ServerFailed(INSTALL_HINT)


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


@dataclass
class PostgresInfo:
    """What another process needs to reach the server (saved in the state folder as postgres.json)."""
    host: str
    port: int
    user: str
    password: str = field(repr=False)  # a failing test's traceback may show this object
    data_dir: str
    socket_dir: str
    bin_dir: str

    @property
    def admin_url(self) -> DatabaseUrl:
        return url_for(self, "postgres")


class DatabaseUrl(str):
    """A database URL that holds the password but never shows it in repr(): a failing test's traceback prints its
    fixtures' values (pytest's long tracebacks list every argument), and a JUnit report once carried the admin
    password that way. str(), f-strings and every client library still see the whole URL."""

    def __repr__(self) -> str:
        scheme, _, rest = self.partition("://")
        credentials, at, place = rest.rpartition("@")
        user = credentials.partition(":")[0]
        return repr(f"{scheme}://{user}:***@{place}" if at else str(self))


def url_for(info: PostgresInfo, database: str) -> DatabaseUrl:
    return DatabaseUrl(f"postgresql+asyncpg://{info.user}:{info.password}@{info.host}:{info.port}/{database}")


class PostgresServer:
    INFO_FILE = "postgres.json"

    def __init__(self, state_dir: Path, *, log_dir: Path, world_id: str = "", bin_dir: Path | None = None,
                 max_connections: int = 300):
        self.state_dir = Path(state_dir).absolute()
        self.log_dir = Path(log_dir)
        self.world_id = world_id or secrets.token_hex(6)
        self.bin_dir = bin_dir
        self.max_connections = max_connections
        self.info: PostgresInfo | None = None
        self.server: Server | None = None

    @property
    def admin_url(self) -> str:
        assert self.info is not None, "start() first"
        return self.info.admin_url

    @property
    def pid(self) -> int:
        assert self.server is not None, "start() first"
        return self.server.pid

    # --- start ------------------------------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> "PostgresServer":
        """initdb (first time only), then the server; returns once it accepts queries. Again after stop() or
        kill(): the same data, password and port."""
        if self.info is None:
            self.info = self._load_or_init()
        user = _run_as()
        self.server = processes.start("postgres", [
            str(Path(self.info.bin_dir) / "postgres"), "-D", self.info.data_dir,
            "-h", self.info.host, "-p", str(self.info.port), "-k", self.info.socket_dir,
            "-c", f"max_connections={self.max_connections}",
            # Test data is throwaway: flushing to disk costs time on a busy 2-core machine and buys nothing here.
            # Commits still reach the OS before they return (synchronous_commit stays on), so a killed server
            # (a crash test) recovers every committed row; only a crash of the machine would lose them.
            "-c", "fsync=off", "-c", "full_page_writes=off",
            "-c", "log_min_messages=warning", "-c", "log_connections=off", "-c", "log_statement=none",
        ], log_dir=self.log_dir, world_id=self.world_id, user=user, cwd=Path("/") if user else None)
        processes.wait_until(f"PostgreSQL on {self.info.host}:{self.info.port}", self.accepts_queries,
                             timeout=timeout, servers=[self.server], interval=0.1)
        return self

    def accepts_queries(self) -> bool:
        assert self.info is not None
        return run_sync(_select_one(self.info.admin_url))

    def _load_or_init(self) -> PostgresInfo:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        saved = self.state_dir / self.INFO_FILE
        if saved.exists():
            return PostgresInfo(**json.loads(saved.read_text()))
        bin_dir = self.bin_dir or find_bin_dir()
        user = _run_as()
        # Root's test folders are 0700: a server run as another user gets a folder of its own under /tmp (removed
        # by remove_data()).
        home = Path(tempfile.mkdtemp(prefix="voxfleet-pg-")) if user else self.state_dir
        data_dir, socket_dir = home / "data", home / "socket"
        if len(str(socket_dir)) > SOCKET_PATH_LIMIT:
            socket_dir = Path(tempfile.mkdtemp(prefix="vfpg-"))
        socket_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        password_file = home / "initdb-password"
        password_file.touch(mode=0o600)
        password_file.write_text(password + "\n")
        if user:
            for path in (home, socket_dir, password_file):
                shutil.chown(path, user, user)
        try:
            subprocess.run([str(bin_dir / "initdb"), "-D", str(data_dir), f"--username={ADMIN_USER}",
                            f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256",
                            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
                           check=True, capture_output=True, text=True, user=user, group=user,
                           cwd="/" if user else None, timeout=120)
        except subprocess.CalledProcessError as error:
            raise ServerFailed(f"initdb failed ({error.returncode}):\n{error.stdout[-2000:]}{error.stderr[-2000:]}")
        finally:
            password_file.unlink(missing_ok=True)
        info = PostgresInfo(host="127.0.0.1", port=processes.free_port(), user=ADMIN_USER, password=password,
                            data_dir=str(data_dir), socket_dir=str(socket_dir), bin_dir=str(bin_dir))
        saved.write_text(json.dumps(asdict(info), indent=2))
        saved.chmod(0o600)  # it holds the password
        return info

    # --- stop -------------------------------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: open sessions are ended, not waited for), SIGKILL after timeout."""
        if self.server is not None:
            stop_pid(self.server.pid, timeout=timeout)

    def kill(self) -> None:
        """A crash: SIGKILL to the server and every backend of it. start() recovers the same data."""
        if self.server is not None:
            with _suppress_gone():
                os.killpg(self.server.pid, signal.SIGKILL)
            if self.server.popen is not None:
                self.server.popen.wait(timeout=10)
            processes.stop_group(self.server.pid, timeout=5)  # waits until no backend of the group is left

    def remove_data(self) -> None:
        """After stop(): the data folder (and the separate socket folder) go; the state folder stays."""
        if self.info is None:
            return
        data_home = Path(self.info.data_dir).parent
        if data_home != self.state_dir:
            shutil.rmtree(data_home, ignore_errors=True)
        else:
            shutil.rmtree(self.info.data_dir, ignore_errors=True)
        if Path(self.info.socket_dir).parent != data_home:
            shutil.rmtree(self.info.socket_dir, ignore_errors=True)


def load_info(state_dir: Path) -> PostgresInfo:
    return PostgresInfo(**json.loads((Path(state_dir) / PostgresServer.INFO_FILE).read_text()))


def stop_pid(pid: int, *, timeout: float = 10.0) -> None:
    """Stop a server by its postmaster pid (= its process group): SIGINT is PostgreSQL's fast shutdown, where the
    SIGTERM processes.stop_group sends would wait for every client to disconnect."""
    with _suppress_gone():
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and processes.pid_alive(pid):
        with _suppress_gone():
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    processes.stop_group(pid, timeout=1)  # whatever is left of the group


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerFailed("PostgreSQL does not run as root and there is no `postgres` user to run it as: "
                           + INSTALL_HINT) from None
    return "postgres"


class _suppress_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, *_: object) -> bool:
        return kind is not None and issubclass(kind, (ProcessLookupError, ChildProcessError, PermissionError))


# --- administration (test fixtures, voxfleet dev) -------------------------------------------------------------

def run_sync(coroutine):
    """Run a coroutine to completion in a thread of its own (safe to call while another event loop runs here)."""
    result: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="voxfleet-postgres-admin")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _select_one(url: str) -> bool:
    import asyncpg

    connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=2)
    try:
        return await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _quoted(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"database name {name!r}: letters, digits and _ only, starting with a letter")
    return f'"{name}"'


def database_url(admin_url: str, name: str) -> DatabaseUrl:
    """The admin URL with another database name."""
    return DatabaseUrl(admin_url.rsplit("/", 1)[0] + "/" + name)


def create_database(admin_url: str, name: str) -> DatabaseUrl:
    """CREATE DATABASE name; returns its URL (same user and password as admin_url)."""
    run_sync(_admin(admin_url, f"CREATE DATABASE {_quoted(name)}"))
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE name, ending its open sessions (WITH (FORCE)); no error when it is gone already."""
    run_sync(_admin(admin_url, f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)"))


def ensure_database(admin_url: str, name: str) -> str:
    """The database's URL, created first if it does not exist (voxfleet dev's database survives restarts)."""
    async def create_if_missing() -> None:
        import asyncpg

        connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
        try:
            if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await connection.execute(f"CREATE DATABASE {_quoted(name)}")
        finally:
            await connection.close()

    run_sync(create_if_missing())
    return database_url(admin_url, name)
