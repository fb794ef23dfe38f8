"""The local stack of `make dev`, and `make break` / `make heal` against any running stack.

    run.py start             prepare the databases and the environment, run honcho on a
                             Procfile written to .dev/: every service folder (books, shop,
                             chat: deploy/service_registry.py) through its own `serve`, the
                             Go gateway too when `go` is on PATH (built first with `go
                             build`), + Prometheus when a `prometheus` binary is on PATH;
                             print the URLs once every one answers its readiness probe;
                             Ctrl-C (or SIGTERM) stops everything and exits 0
    run.py break SERVICE     inject a fault (default: full outage) through PUT /admin/faults
                             [--fault '{"error_rate": 0.5}']
    run.py heal SERVICE      DELETE /admin/faults

Databases: SQLite files in .dev/ unless DATABASE_URL names a PostgreSQL server; then each
service gets its own database on it (books, shop, chat), created when missing. The
fault-injection token is FAULTS__TOKEN, or DEV_FAULTS_TOKEN below. Ports come from
observability/prometheus/targets.yml (design §8: 8001-8003, the same host ports as compose);
BOOKS_PORT, SHOP_PORT, CHAT_PORT and PROMETHEUS_PORT override them, for `start` and for
`break`/`heal` alike.

Tokens: the stack's issuer keeps its key pair in .dev/auth/ (made once, chassis.dev_issuer).
Every service trusts its public key; each gets the tokens its service.yml lists under
`credentials` (shop: books' stock:reserve), minted at every start; `make token
SCOPE=catalog:write` prints one for a person.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, ModuleType

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import service_registry  # noqa: E402 - deploy/ holds no package

# Where the SQLite files and Prometheus data live; DEV_DIR moves it (the tests use their own).
DEV_DIR = Path(os.environ.get("DEV_DIR") or ROOT / ".dev").resolve()
RENDERER = ROOT / "observability" / "prometheus" / "render.py"
REGISTRY = service_registry.load_services()
# The Python services: each has a database, `migrate` and `seed`, a console script and tokens.
SERVICES = tuple(service_registry.python_services())
# The Go services (the gateway): `go build` into their folder, then `<folder>/<name> serve`.
GO_SERVICES = tuple(name for name, s in REGISTRY.items() if s.language == service_registry.GO)
# A service's tokens for its dependencies, minted at each start: valid longer than any dev
# session runs.
CREDENTIAL_SECONDS = 7 * 24 * 3600
PROMETHEUS_PROCESS = (
    'prometheus: exec prometheus --config.file="$DEV_DIR/prometheus.yml"'
    ' --storage.tsdb.path="$DEV_DIR/prometheus" --storage.tsdb.retention.time=1d'
    ' --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --enable-feature=exemplar-storage'
    " --log.level=warn"
)
DEV_FAULTS_TOKEN = "dev-faults-token-not-a-secret"  # noqa: S105 - the published dev default
PROMETHEUS_PORT = 9090
PROMETHEUS_INTERVAL = "2s"
OTLP_HTTP_PORT = 4318
# The image compose runs (a test keeps the two the same).
JAEGER_IMAGE = "jaegertracing/jaeger:2.13.0"
OUTAGE = '{"outage": true}'
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 120.0
READY_POLL_SECONDS = 0.2
STOP_SECONDS = 5  # honcho's own wait before it kills what did not stop


def load_renderer() -> ModuleType:
    """observability/prometheus/render.py, the one source of scrape targets and ports."""
    name = "bookshop_prometheus_render"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, RENDERER)
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def service_ports(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Every service's port (its service.yml), each overridable by ``<NAME>_PORT``."""
    defaults: dict[str, int] = load_renderer().load_targets(registry=REGISTRY).services
    return {name: port_setting(environ, name, port) for name, port in defaults.items()}


def prometheus_port(environ: Mapping[str, str] = os.environ) -> int:
    return port_setting(environ, "prometheus", PROMETHEUS_PORT)


def port_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    setting = f"{variable(name)}_PORT"
    value = environ.get(setting, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{setting} must be a port number (1-65535), not {value!r}")
    return int(value)


def faults_token(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("FAULTS__TOKEN") or DEV_FAULTS_TOKEN


def shown_token(environ: Mapping[str, str] = os.environ) -> str:
    """The published dev default is printed; a token of the user's own never is."""
    token = faults_token(environ)
    return repr(token) if token == DEV_FAULTS_TOKEN else "from FAULTS__TOKEN (not shown)"


# -- start --------------------------------------------------------------------------------------


def start() -> int:
    began = time.monotonic()
    for tool in (*SERVICES, "honcho"):
        if shutil.which(tool) is None:
            return fail(f"{tool} is not on PATH: run this through `uv run` (make dev does)")
    try:
        ports = service_ports()
        prometheus_at = prometheus_port()
    except ValueError as exc:
        return fail(str(exc))
    go_note = build_go_services()
    if go_note is not None:
        ports = {name: port for name, port in ports.items() if name not in GO_SERVICES}
    busy = [f"{name} :{port}" for name, port in ports.items() if port_in_use(port)]
    if busy:
        return fail(
            f"port(s) in use: {', '.join(busy)}. Is `make dev` or `make up` already running? "
            "Other ports: GATEWAY_PORT=9000 BOOKS_PORT=9001 SHOP_PORT=9002 CHAT_PORT=9003 make dev"
        )
    DEV_DIR.mkdir(parents=True, exist_ok=True)
    try:
        databases = database_urls(os.environ.get("DATABASE_URL"))
    except ValueError as exc:
        return fail(str(exc))
    env = stack_environment(ports, databases, prometheus_at)
    env.update(credentials(DEV_DIR / "auth"))
    os.environ.update(env)
    if not prepare_databases(databases):
        return 1
    prepared = time.monotonic()
    running = {name: REGISTRY[name] for name in ports}
    processes = list(running)
    prometheus = prometheus_note(prometheus_at)
    if prometheus is None:
        renderer = load_renderer()
        (DEV_DIR / "prometheus.yml").write_text(
            renderer.render("local", interval=PROMETHEUS_INTERVAL, ports=ports, registry=running)
        )
        processes.append("prometheus")
    procfile = DEV_DIR / "Procfile"
    procfile.write_text(procfile_text(running))
    honcho = shutil.which("honcho")
    assert honcho is not None
    command = [honcho, "start", "-f", str(procfile), "-d", str(ROOT), "-e", os.devnull]
    # Its own session: a Ctrl-C reaches this process only, which stops honcho exactly once
    # (honcho then stops each process it runs with SIGTERM, their graceful shutdown).
    stopper = Stopper()  # before honcho starts: no Ctrl-C can fall between the two
    stack = subprocess.Popen([*command, *processes], start_new_session=True)  # noqa: S603
    stopper.attach(stack)
    try:
        probes = {name: f"http://{HOST}:{port}/health/ready" for name, port in ports.items()}
        if prometheus is None:
            probes["prometheus"] = f"http://{HOST}:{prometheus_at}/-/ready"
        waiting = wait_until_ready(probes, stack, stopper)
        if not stopper.stopping and stack.poll() is None:
            print_banner(
                ports,
                databases,
                prometheus or f"http://{HOST}:{prometheus_at}/",
                traces_note(env),
                go_note,
                ready_seconds=time.monotonic() - began,
                prepare_seconds=prepared - began,
                not_ready=waiting,
            )
        code = stack.wait()
    finally:
        stopper.ensure_stopped()
    if stopper.stopping:
        print("make dev: stopped", flush=True)
        return 0
    return fail(f"a process of the stack exited, so honcho stopped the rest (exit {code})")


class Stopper:
    """SIGINT, SIGTERM and SIGHUP stop the stack once; the process then exits 0."""

    def __init__(self) -> None:
        self.stack: subprocess.Popen[bytes] | None = None
        self.stopping = False
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._stop)

    def attach(self, stack: subprocess.Popen[bytes]) -> None:
        self.stack = stack
        if self.stopping:  # the signal came while honcho was starting
            self._terminate()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._terminate()
        # os.write, not print: the signal may land inside a print (print is not reentrant),
        # and a closed terminal or pipe must not stop the stop.
        with contextlib.suppress(OSError):
            message = f"\nmake dev: {signal.Signals(signum).name}: stopping the stack\n"
            os.write(sys.stdout.fileno(), message.encode())

    def _terminate(self) -> None:
        if self.stack is not None and self.stack.poll() is None:
            self.stack.send_signal(signal.SIGTERM)

    def ensure_stopped(self) -> None:
        """However this process ends, the stack ends with it: honcho stops each process with
        SIGTERM (and kills what is still running STOP_SECONDS later)."""
        if self.stack is None:
            return
        self._terminate()
        try:
            self.stack.wait(STOP_SECONDS + 10)
        except subprocess.TimeoutExpired:
            self.stack.kill()
            self.stack.wait()


def wait_until_ready(
    probes: Mapping[str, str],
    stack: subprocess.Popen[bytes],
    stopper: Stopper,
    timeout: float = READY_TIMEOUT_SECONDS,
) -> list[str]:
    """Waits until every probe answers 200; returns the names still not ready at the timeout
    (an empty list when all are)."""
    waiting = dict(probes)
    deadline = time.monotonic() + timeout
    while waiting and stack.poll() is None and not stopper.stopping:
        for name, url in list(waiting.items()):
            if answers_ok(url):
                del waiting[name]
        if waiting:
            if time.monotonic() > deadline:
                break
            time.sleep(READY_POLL_SECONDS)
    return sorted(waiting)


def answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def database_urls(url: str | None) -> dict[str, str]:
    """One URL per service: SQLite files in .dev/, or one database each on DATABASE_URL's
    PostgreSQL server (created when missing)."""
    if not url:
        return {name: f"sqlite:///{DEV_DIR / f'{name}.db'}" for name in SERVICES}
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            "DATABASE_URL must name a PostgreSQL server "
            "(postgresql://USER:PASSWORD@HOST:5432/postgres); unset it for SQLite"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")  # the driver the chassis ships
    admin = parsed.set(database=parsed.database or "postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for name in SERVICES:
                exists = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if not exists:
                    connection.execute(text(f'CREATE DATABASE "{name}"'))
                    print(f"created database {name}")
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        raise ValueError(f"cannot prepare databases on DATABASE_URL: {original}") from None
    finally:
        engine.dispose()
    return {
        name: parsed.set(database=name).render_as_string(hide_password=False) for name in SERVICES
    }


def stack_environment(
    ports: Mapping[str, int], databases: Mapping[str, str], prometheus_at: int = PROMETHEUS_PORT
) -> dict[str, str]:
    """The variables the Procfile and the services read (per-service ones are set there):
    ``<NAME>_PORT``, ``<NAME>_URL`` and ``<NAME>_DATABASE_URL`` of every service."""
    env = {
        "DEV_DIR": str(DEV_DIR),
        "PROMETHEUS_PORT": str(prometheus_at),
        "FAULTS__ENABLED": "true",
        "FAULTS__TOKEN": faults_token(),
        "LOGGING__FORMAT": os.environ.get("LOGGING__FORMAT", "console"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ports:
        env[f"{variable(name)}_PORT"] = str(ports[name])
        env[f"{variable(name)}_URL"] = f"http://{HOST}:{ports[name]}"
    for name in SERVICES:
        env[f"{variable(name)}_DATABASE_URL"] = databases[name]
    no_otel_choice = not any(
        key in os.environ for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER")
    )
    if no_otel_choice and not port_in_use(OTLP_HTTP_PORT):
        env["OTEL_TRACES_EXPORTER"] = "none"  # nothing would receive them: no export errors
    # honcho pipes the services' output, so they see no terminal: ask for colour when this
    # process has one (NO_COLOR, the common convention, still wins).
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        env.setdefault("FORCE_COLOR", "1")
    return env


# gift-cards -> GIFT_CARDS, as a service's name starts an environment variable.
variable = service_registry.env_name


def procfile_text(services: Mapping[str, service_registry.ServiceManifest] = REGISTRY) -> str:
    """One line per service, each through its own ``serve``, plus Prometheus'."""
    lines = [
        "# Written by deploy/dev/run.py for `make dev` from the service folders; honcho runs it.",
    ]
    for name, service in services.items():
        own = variable(name)
        python = service.language == service_registry.PYTHON
        settings = (
            [f'DATABASE_URL="${own}_DATABASE_URL"', 'AUTH__PUBLIC_KEY_FILE="$AUTH_PUBLIC_KEY_FILE"']
            if python
            else []
        )
        for dependency in service.dependencies:
            key = f"DEPENDENCIES__{variable(dependency)}"
            settings.append(f'{key}__BASE_URL="${variable(dependency)}_URL"')
            if dependency in service.credentials:
                settings.append(f'{key}__TOKEN_FILE="${own}_{variable(dependency)}_TOKEN_FILE"')
        program = name if python else shlex.quote(go_binary(service))
        command = f'exec {program} serve --host {HOST} --port "${own}_PORT"'
        lines.append(f"{name}: {' '.join(settings)} {command}")
    lines.append(PROMETHEUS_PROCESS)
    return "\n".join(lines) + "\n"


def go_binary(service: service_registry.ServiceManifest) -> str:
    """Where `go build` puts a Go service's program: its folder, named after it."""
    return str(service.folder / service.name)


def build_go_services() -> str | None:
    """`go build` of every Go service (what `make gateway` does); None when they are built, or
    why they are left out of the stack (no Go on PATH, or a failed build)."""
    if not GO_SERVICES:
        return None
    if shutil.which("go") is None:
        return f"not started: no `go` on PATH (Go >= 1.26 builds {', '.join(GO_SERVICES)})"
    for name in GO_SERVICES:
        built = subprocess.run(  # noqa: S603 - our own fixed command line
            ["go", "build", "-trimpath", "-o", name, "."],  # noqa: S607 - go from PATH
            cwd=REGISTRY[name].folder,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            print(built.stderr, file=sys.stderr)
            return f"not started: `go build` of {name} failed (above)"
    return None


def credentials(directory: Path) -> dict[str, str]:
    """The issuer's public key, which every service trusts, and the tokens each service.yml
    asks for (``<NAME>_<DEPENDENCY>_TOKEN_FILE``; the Procfile hands them out)."""
    from chassis.dev_issuer import PUBLIC_KEY, DevIssuer

    issuer = DevIssuer.in_directory(directory)
    env = {"AUTH_PUBLIC_KEY_FILE": str(directory / PUBLIC_KEY)}
    for name, service in REGISTRY.items():
        for dependency, scopes in service.credentials.items():
            token = directory / f"{name}-{dependency}.jwt"
            token.write_text(
                issuer.mint(
                    audience=dependency,
                    scopes=scopes,
                    subject=name,
                    ttl_seconds=CREDENTIAL_SECONDS,
                ),
                encoding="ascii",
            )
            token.chmod(0o600)
            env[f"{variable(name)}_{variable(dependency)}_TOKEN_FILE"] = str(token)
    return env


def prepare_databases(databases: Mapping[str, str]) -> bool:
    """``<service> migrate`` then ``<service> seed``, every service side by side."""
    for command in ("migrate", "seed"):
        running = {
            name: subprocess.Popen(  # noqa: S603 - our own fixed command line
                [name, command],
                env={**os.environ, "DATABASE_URL": databases[name], "LOGGING__FORMAT": "json"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in SERVICES
        }
        for name, process in running.items():
            output, _ = process.communicate()
            if process.returncode != 0:
                print(output, file=sys.stderr)
                fail(f"`{name} {command}` failed (exit {process.returncode})")
                return False
        print(f"{command}: {', '.join(SERVICES)} done")
    return True


def prometheus_note(port: int = PROMETHEUS_PORT) -> str | None:
    """Why Prometheus is not started, or None when it is."""
    if shutil.which("prometheus") is None:
        return "not started: no `prometheus` on PATH (Debian: apt-get install prometheus)"
    if port_in_use(port):
        return f"not started: port {port} is in use (PROMETHEUS_PORT=... picks another)"
    return None


def traces_note(env: Mapping[str, str]) -> str:
    if env.get("OTEL_TRACES_EXPORTER") == "none":
        return (
            f"not exported (nothing listens on :{OTLP_HTTP_PORT}; start Jaeger, e.g. "
            f"`docker run --rm -p 16686:16686 -p 4318:4318 {JAEGER_IMAGE}`, then restart)"
        )
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://localhost:{OTLP_HTTP_PORT}")
    return f"OTLP/HTTP to {endpoint}"


def print_banner(
    ports: Mapping[str, int],
    databases: Mapping[str, str],
    prometheus: str,
    traces: str,
    go_note: str | None = None,
    *,
    ready_seconds: float,
    prepare_seconds: float,
    not_ready: Sequence[str] = (),
) -> None:
    storage = (
        "PostgreSQL (DATABASE_URL)"
        if databases["books"].startswith("postgresql")
        else f"SQLite in {DEV_DIR}"
    )
    url = f"http://{HOST}"
    if not_ready:
        headline = (
            f"make dev: NOT READY after {ready_seconds:.1f} s: {', '.join(not_ready)} "
            "(see the lines above); the rest:"
        )
    else:
        headline = (
            f"make dev: ready in {ready_seconds:.1f} s (migrate and seed {prepare_seconds:.1f} s)"
            f": {', '.join(ports)} as local processes, {storage}"
        )
    print(
        "\n" + headline,
        *(
            service_registry.banner_line(REGISTRY[name], f"{url}:{port}")
            for name, port in ports.items()
        ),
        *([f"  {', '.join(GO_SERVICES):<11} {go_note}"] if go_note else []),
        f"  prometheus  {prometheus}",
        f"  traces      {traces}",
        "  health      /health/live, /health/ready, /metrics and /info on every service",
        "  writes      books' changes need a token: make token SCOPE=catalog:write "
        "(paste it in /ui/'s Authorize)",
        f"  faults      token {shown_token()} (FAULTS__TOKEN overrides it):",
        "              make break SERVICE=books [FAULT='{\"error_rate\": 0.5}'], "
        "make heal SERVICE=books",
        "Ctrl-C stops everything.\n",
        sep="\n",
        flush=True,
    )


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


# -- break / heal -------------------------------------------------------------------------------


def faults(service: str, method: str, body: str | None, base_url: str | None) -> int:
    try:
        ports = service_ports()
    except ValueError as exc:
        return fail(str(exc))
    if service not in SERVICES:  # the chassis' fault injection: the Python services
        return fail(f"SERVICE must be one of {', '.join(SERVICES)}, not {service!r}")
    url = f"{base_url or f'http://{HOST}:{ports[service]}'}/admin/faults"
    if body is not None:
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            return fail(f"FAULT is not JSON ({exc}): {body}")
    request = urllib.request.Request(  # noqa: S310 - http(s) URL we built
        url,
        data=body.encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {faults_token()}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            answer = response.read().decode()
    except urllib.error.HTTPError as exc:
        hint = {
            401: "wrong token: set FAULTS__TOKEN to the stack's token",
            404: "fault injection is off in that stack (FAULTS__ENABLED=true)",
        }.get(exc.code, exc.read().decode())
        return fail(f"{method} {url}: {exc.code}: {hint}")
    except OSError as exc:
        return fail(f"{method} {url}: {exc}; is the stack running (make dev / make up)?")
    print(f"{service}: {answer}")
    return 0


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="run the local stack (make dev)")
    for name, helptext in (("break", "inject a fault"), ("heal", "remove every fault")):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("service")
        command.add_argument("--url", help="the service's base URL (default: its design port)")
        if name == "break":
            command.add_argument("--fault", default=OUTAGE, help=f"JSON (default {OUTAGE})")
    arguments = parser.parse_args(argv)
    if arguments.command == "start":
        with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C before the stack runs
            return start()
        print("\nmake dev: stopped before the stack started")
        return 0
    if arguments.command == "break":
        return faults(arguments.service, "PUT", arguments.fault or OUTAGE, arguments.url)
    return faults(arguments.service, "DELETE", None, arguments.url)


if __name__ == "__main__":
    sys.exit(main())
