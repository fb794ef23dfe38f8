"""Throwaway PostgreSQL servers for tests.

``start_postgres()`` returns a :class:`PostgresServer`: a testcontainers container when a Docker
engine answers, otherwise a cluster made with the local PostgreSQL binaries in a temp directory.

Exceptions::

    RuntimeError
     └── PostgresUnavailable   no server could be started, or the server does not answer
"""

from __future__ import annotations

import abc
import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import psycopg2
from psycopg2 import sql

if TYPE_CHECKING:
    from testcontainers.community.postgres import PostgresContainer

DOCKER_IMAGE = "postgres:16-alpine"
DOCKER_PING_TIMEOUT = 3.0
START_TIMEOUT = 30
ADMIN_USER = "postgres"
ADMIN_DATABASE = "postgres"
SYSTEM_USER = "postgres"
BINARY_DIRS = "/usr/lib/postgresql/*/bin"
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TOOLS = ("initdb", "pg_ctl", "postgres")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started, or it does not answer."""


class PostgresServer(abc.ABC):
    """A throwaway PostgreSQL server: connection details, databases and lifecycle."""

    def __init__(self, *, host: str, port: int, user: str, password: str) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r}, port={self.port})"

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the maintenance database."""
        return self.url(ADMIN_DATABASE)

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        credentials = f"{self.user}:{self.password}"
        return f"postgresql+psycopg2://{credentials}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (random name by default) and return its URL."""
        name = _checked_name(name or f"test_{secrets.token_hex(6)}")
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its clients; no error if it does not exist."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self._execute(statement.format(sql.Identifier(_checked_name(name))))

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server again after :meth:`stop` (same port, same data)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server, keeping its data, so that connections fail until :meth:`start`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the server and delete everything it stored; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _connect(self) -> psycopg2.extensions.connection:
        try:
            return psycopg2.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=ADMIN_DATABASE,
                connect_timeout=5,
            )
        except psycopg2.OperationalError as exc:
            raise PostgresUnavailable(f"{self!r} does not answer: {exc}") from exc

    def _execute(self, statement: sql.Composable) -> None:
        connection = self._connect()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def _wait_until_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._connect().close()
            except PostgresUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            else:
                return


class LocalPostgresServer(PostgresServer):
    """A cluster made by ``initdb`` in a temp directory and run by ``pg_ctl``.

    As root (initdb refuses root) the binaries run as the ``postgres`` system user.
    """

    def __init__(self, *, bindir: Path, directory: Path, run_as: str | None) -> None:
        super().__init__(
            host="127.0.0.1", port=_free_port(), user=ADMIN_USER, password=secrets.token_hex(12)
        )
        self.directory = directory
        self._bindir = bindir
        self._run_as = run_as
        self._running = False
        self._finalizer = weakref.finalize(self, _destroy_cluster, bindir, run_as, directory)

    @classmethod
    def launch(cls) -> LocalPostgresServer:
        """Create, configure and start a new cluster."""
        bindir = find_binaries()
        run_as = SYSTEM_USER if os.geteuid() == 0 else None
        if run_as:
            _ensure_system_user(run_as)
        directory = Path(tempfile.mkdtemp(prefix="chassis-pg-", dir=_base_tempdir(run_as)))
        server = cls(bindir=bindir, directory=directory, run_as=run_as)
        try:
            server._initdb()
            server.start()
        except BaseException:
            server.close()
            raise
        return server

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.directory / "data"

    def start(self) -> None:
        """Start the cluster (no-op when running)."""
        if not self._running:
            log = str(self.directory / "server.log")
            timeout = str(START_TIMEOUT)
            self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-w", "-t", timeout, "start")
            self._running = True

    def stop(self) -> None:
        """Stop the cluster cleanly, disconnecting clients (no-op when stopped)."""
        if self._running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            self._running = False

    def close(self) -> None:
        """Stop the cluster at once and delete its directory."""
        self._running = False
        self._finalizer()

    def _initdb(self) -> None:
        password_file = self.directory / "password"
        password_file.write_text(self.password)
        if self._run_as:
            for path in (self.directory, password_file):
                shutil.chown(path, self._run_as, self._run_as)
        self._run(
            "initdb",
            *("-D", str(self.data_dir), "-U", self.user, f"--pwfile={password_file}"),
            *("--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C"),
            "--no-sync",
        )
        password_file.unlink()
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(_server_settings(self.port, self.directory))

    def _run(self, tool: str, *args: str) -> None:
        try:
            result = subprocess.run(  # noqa: S603 - our own fixed command line
                _command(self._bindir, self._run_as, tool, *args),
                cwd=self.directory,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT + 10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{tool} failed: {exc}") from exc
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip() + self._log_tail()
            raise PostgresUnavailable(
                f"{tool} {' '.join(args)} exited {result.returncode}: {output}"
            )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            tail = (self.directory / "server.log").read_text().splitlines()[-lines:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(tail)


class ContainerPostgresServer(PostgresServer):
    """A testcontainers ``PostgresContainer`` bound to a fixed host port."""

    def __init__(self, container: PostgresContainer, *, host: str, port: int) -> None:
        super().__init__(host=host, port=port, user=container.username, password=container.password)
        self._container = container

    @classmethod
    def launch(cls) -> ContainerPostgresServer:
        """Start a new container; PostgresUnavailable when no Docker engine answers."""
        _ping_docker()
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(
            DOCKER_IMAGE, username=ADMIN_USER, password=secrets.token_hex(12), dbname=ADMIN_DATABASE
        )
        container.with_bind_ports(5432, _free_port())
        container.with_command(["postgres", *_flags(FAST_SETTINGS)])
        try:
            container.start()
            host, port = container.get_container_host_ip(), container.get_exposed_port(5432)
        except Exception as exc:
            with contextlib.suppress(Exception):
                container.stop()
            raise PostgresUnavailable(f"PostgreSQL container did not start: {exc}") from exc
        return cls(container, host=host, port=port)

    def start(self) -> None:
        """Start the stopped container again and wait until it accepts connections."""
        self._container.get_wrapped_container().start()
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop the container, keeping it and its data."""
        self._container.get_wrapped_container().stop(timeout=10)

    def close(self) -> None:
        """Remove the container and its volumes."""
        self._container.stop()


def start_postgres() -> PostgresServer:
    """Start a throwaway server: a container when Docker answers, else local binaries."""
    reasons = []
    for launch in (ContainerPostgresServer.launch, LocalPostgresServer.launch):
        try:
            return launch()
        except PostgresUnavailable as exc:
            reasons.append(str(exc))
    raise PostgresUnavailable("no PostgreSQL server could be started:\n- " + "\n- ".join(reasons))


def find_binaries() -> Path:
    """Directory holding initdb, pg_ctl and postgres: PATH first, else the newest Debian one."""
    candidates = []
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    installed = Path("/").glob(BINARY_DIRS.lstrip("/"))
    candidates += sorted(installed, key=lambda path: _version(path.parent.name), reverse=True)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in _TOOLS):
            return candidate
    raise PostgresUnavailable(
        f"no PostgreSQL server binaries ({', '.join(_TOOLS)}) on PATH or in {BINARY_DIRS}; "
        "install them (Debian: apt-get install postgresql) or start Docker"
    )


def _command(bindir: Path, run_as: str | None, tool: str, *args: str) -> list[str]:
    command = [str(bindir / tool), *args]
    if run_as:
        return [_which("runuser"), "-u", run_as, "--", *command]
    return command


def _destroy_cluster(bindir: Path, run_as: str | None, directory: Path) -> None:
    data_dir = str(directory / "data")
    running = (directory / "data" / "postmaster.pid").exists()
    with contextlib.suppress(PostgresUnavailable, OSError, subprocess.SubprocessError):
        if running:
            subprocess.run(  # noqa: S603 - our own fixed command line
                _command(bindir, run_as, "pg_ctl", "-D", data_dir, "-m", "immediate", "-w", "stop"),
                cwd=directory,
                capture_output=True,
                timeout=START_TIMEOUT,
                check=False,
            )
    shutil.rmtree(directory, ignore_errors=True)


def _server_settings(port: int, directory: Path) -> str:
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{directory}'",
        **FAST_SETTINGS,
    }
    return "\n# chassis.testing\n" + "".join(
        f"{key} = {value}\n" for key, value in settings.items()
    )


def _flags(settings: dict[str, str]) -> list[str]:
    return [flag for key, value in settings.items() for flag in ("-c", f"{key}={value}")]


def _ping_docker() -> None:
    try:
        import docker

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        raise PostgresUnavailable(f"no Docker engine answers: {exc}") from exc


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        command = [_which("useradd"), "--system", "--user-group", "--no-create-home"]
        command += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"cannot create system user {name!r}: {result.stderr.strip()}"
            ) from None


def _base_tempdir(run_as: str | None) -> str:
    """A temp dir the server's user can reach (TMPDIR may be private to root)."""
    base = Path(tempfile.gettempdir())
    if run_as is None or all(path.stat().st_mode & 0o001 for path in [base, *base.parents]):
        return str(base)
    return "/tmp"  # noqa: S108 - the directory itself is made private by mkdtemp


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise PostgresUnavailable(f"{program} not found on PATH")
    return path


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _checked_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name must match {_DATABASE_NAME.pattern}: {name!r}")
    return name
