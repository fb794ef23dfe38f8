"""The whole stack on minikube, as `make up` runs it under compose: `make k8s-up`, `make k8s-down`.

    run.py up [--offline]    check minikube, kubectl, helm and docker; build every service's
                             image with compose's own build, into minikube's Docker engine
                             (`minikube docker-env`); install the chart with
                             values-minikube.yaml (PostgreSQL, Jaeger, Prometheus, Grafana in the
                             release) and wait until every pod is ready; forward each port
                             compose publishes to 127.0.0.1 (a background `run.py forward`),
                             print the URLs
    run.py down [--volumes]  stop the forwards, uninstall the release; --volumes also deletes
                             the namespace: PostgreSQL's volume and the Secret of its passwords
    run.py forward           the forwards themselves (forward.py: each checked and started
                             again when it ends or stops answering) until SIGTERM; `up` starts it

The ports are compose's (the services' service.yml ports, Jaeger :16686, Prometheus :9090,
Grafana :3000), so `make break`, `make heal`, `make load`, `make e2e` with E2E_*_URL and a
browser work against the cluster as against compose; the two cannot run at once.

Images: `docker compose build` of the service images, with the docker CLI pointed at minikube's
engine, so they are exactly compose's (bookshop-<service>:dev) and already on the node; a build
that fails stops k8s-up. This needs minikube's default container runtime, Docker.

Tokens: the release trusts the dev issuer of .dev/auth (chassis.dev_issuer, the key pair
`make dev` uses), so `make token` mints tokens the cluster accepts; each service's credentials
(service.yml) are minted into .dev/k8s/ and handed to the chart (auth.publicKey, auth.tokens).
The fault-injection token is FAULTS__TOKEN, or compose's published default.

--offline (OFFLINE=1): the stand-ins `make offline-images` builds (deploy/offline/images.env)
are loaded into the cluster from the local Docker engine instead of pulled, the services are
built on the stand-in Python image, and Grafana is left out (it has no stand-in).

Settings: MINIKUBE_PROFILE (minikube), K8S_NAMESPACE (bookshop), HELM (else helm on PATH or
where `go install` puts it), FAULTS__TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from chassis.dev_issuer import DevIssuer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
sys.path.insert(0, str(HERE))
import service_registry  # noqa: E402 - deploy/ holds no package
from forward import Forward, Forwarder  # noqa: E402 - nor does deploy/minikube/

CHART = ROOT / "deploy" / "helm" / "bookshop"
VALUES = CHART / "values-minikube.yaml"
COMPOSE_DIR = ROOT / "deploy" / "compose"
OFFLINE_IMAGES = ROOT / "deploy" / "offline" / "images.env"
DEV_DIR = Path(os.environ.get("DEV_DIR") or ROOT / ".dev").resolve()
AUTH_DIR = DEV_DIR / "auth"
STATE_DIR = DEV_DIR / "k8s"
FORWARD_PID = STATE_DIR / "forward.pid"
FORWARD_LOG = STATE_DIR / "forward.log"
RELEASE = "bookshop"
# compose's image tag (bookshop-<service>:dev) and values-minikube.yaml's image.tag.
IMAGE_TAG = "dev"
# compose's published default (deploy/compose/compose.yaml, deploy/dev/run.py).
DEV_FAULTS_TOKEN = "dev-faults-token-not-a-secret"  # noqa: S105 - the published dev default
TOKEN_SECONDS = 7 * 24 * 3600  # as compose's auth-init: minted again at each `up`
READY_TIMEOUT = "10m"  # the first install pulls the infrastructure's images
FORWARD_TIMEOUT_SECONDS = 60.0
STATUS_TIMEOUT_SECONDS = 60
HOST = "127.0.0.1"
MINIKUBE_START = "minikube start --memory=4096 --cpus=2"
INSTALL = {
    "minikube": "https://minikube.sigs.k8s.io/docs/start/",
    "kubectl": "https://kubernetes.io/docs/tasks/tools/ (or `minikube kubectl --`)",
    "docker": "the docker CLI with Compose v2 (what `make up` needs): it builds the images",
    "helm": "go install helm.sh/helm/v3/cmd/helm@v3.22.0 (.ci/run builds it so)",
}
# What each offline stand-in replaces, and the user its image runs as (resolved in the image:
# the stand-ins are Debian's packages, whose users are not the official images').
OFFLINE_INFRASTRUCTURE = {
    "postgresql": ("POSTGRES_IMAGE", "postgres"),
    "jaeger": ("JAEGER_IMAGE", None),
    "prometheus": ("PROMETHEUS_IMAGE", "prometheus"),
}
# The ports compose publishes that k8s-up does not forward: nothing outside the cluster needs
# the database or the OTLP receivers, and locust runs from the host (`make load`).
NOT_FORWARDED = {5432, 4317, 4318, 8089}


class Failure(Exception):
    """What stops `up` or `down`, said for a person."""


def profile() -> str:
    return os.environ.get("MINIKUBE_PROFILE") or "minikube"


def namespace() -> str:
    return os.environ.get("K8S_NAMESPACE") or RELEASE


def kubectl(*args: str) -> list[str]:
    return ["kubectl", "--context", profile(), "--namespace", namespace(), *args]


def find_helm() -> str | None:
    """HELM, helm on PATH, or where `go install` puts it (GOBIN, else GOPATH/bin, ~/go/bin)."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    found = shutil.which("helm")
    if found:
        return found
    gopath = os.environ.get("GOPATH", str(Path.home() / "go")).split(os.pathsep)[0]
    candidate = Path(os.environ.get("GOBIN") or Path(gopath) / "bin") / "helm"
    return str(candidate) if candidate.is_file() else None


# -- what runs ------------------------------------------------------------------------------------


def forwards(
    registry: Mapping[str, service_registry.ServiceManifest], *, grafana: bool
) -> list[Forward]:
    """compose's published ports: each service's, then Jaeger's UI, Prometheus', Grafana's."""
    found = [
        Forward(name, service.port, 8000, "/health/live") for name, service in registry.items()
    ]
    found += [Forward("jaeger", 16686, 16686, "/"), Forward("prometheus", 9090, 9090, "/-/healthy")]
    if grafana:
        found.append(Forward("grafana", 3000, 3000, "/api/health"))
    return found


def offline_images(path: Path = OFFLINE_IMAGES) -> dict[str, str]:
    """deploy/offline/images.env: VARIABLE -> image."""
    images = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            variable, _, image = line.partition("=")
            images[variable.strip()] = image.strip()
    return images


def compose_build(
    registry: Mapping[str, service_registry.ServiceManifest], *, offline: bool
) -> list[str]:
    """`make up`'s build of the service images (compose.yaml and generated/services.yaml; the
    stand-in Python image with --offline), nothing else."""
    command = ["docker", "compose"]
    if offline:
        command += ["--env-file", str(OFFLINE_IMAGES)]
    command += ["-f", str(COMPOSE_DIR / "compose.yaml")]
    command += ["-f", str(COMPOSE_DIR / "generated" / "services.yaml"), "build", *registry]
    return command


def image_name(service: str) -> str:
    return f"bookshop-{service}:{IMAGE_TAG}"


def helm_values(
    *,
    public_key: Path,
    tokens: Mapping[str, Path],
    offline: Mapping[str, tuple[str, Mapping[str, int]]] | None,
    secrets: Path,
) -> list[str]:
    """The chart's values beyond values-minikube.yaml, as helm arguments: the issuer's public
    key and each credential's token (files), the values file ``secrets`` (the fault token: in a
    file, not on a command line every process can read), and with ``offline`` the stand-in
    images (piece -> (image, its user's ids)) and no Grafana."""
    arguments = ["-f", str(VALUES), "-f", str(secrets)]
    arguments += ["--set-file", f"auth.publicKey={public_key}"]
    for key, path in tokens.items():
        arguments += ["--set-file", f"auth.tokens.{key}={path}"]
    if offline is not None:
        for piece, (image, ids) in offline.items():
            arguments += ["--set-string", f"infrastructure.{piece}.image={image}"]
            for key, value in ids.items():
                arguments += ["--set", f"infrastructure.{piece}.podSecurityContext.{key}={value}"]
        arguments += ["--set", "infrastructure.grafana.enabled=false"]
    return arguments


def helm_install(helm: str, values: Sequence[str]) -> list[str]:
    return [
        helm, "upgrade", "--install", RELEASE, str(CHART),
        "--kube-context", profile(), "--namespace", namespace(), "--create-namespace",
        "--wait", "--timeout", READY_TIMEOUT, *values,
    ]  # fmt: skip


# -- up -------------------------------------------------------------------------------------------


def installed(*tools: str) -> str:
    """helm's path, once each of ``tools`` and helm are installed; else Failure naming one."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise Failure(f"{tool} is not installed (not on PATH): {INSTALL[tool]}")
    helm = find_helm()
    if helm is None:
        raise Failure(f"helm is not installed: {INSTALL['helm']}")
    return helm


def preflight() -> str:
    """helm's path, once minikube, kubectl and docker are there and the cluster runs."""
    helm = installed("minikube", "kubectl", "docker")
    status = capture(["minikube", "status", "--profile", profile(), "--output", "json"])
    try:
        states: Any = json.loads(status.stdout)
    except json.JSONDecodeError:
        states = {}
    if isinstance(states, list):  # one entry per node: the first is the control plane
        states = states[0] if states else {}
    if not isinstance(states, dict) or states.get("APIServer") != "Running":
        raise Failure(
            f"minikube profile {profile()!r} is not running "
            f"({status.stdout.strip() or status.stderr.strip()}). Start it: {MINIKUBE_START}"
        )
    return helm


def up(*, offline: bool) -> None:
    registry = service_registry.python_services()
    helm = preflight()
    found = forwards(registry, grafana=not offline)
    stop_forwarding()
    busy = [f":{forward.local}" for forward in found if port_in_use(forward.local)]
    if busy:
        raise Failure(f"port(s) in use: {', '.join(busy)}. Is `make up` or `make dev` running?")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tokens = mint_tokens(registry)
    pieces = load_offline_images() if offline else None
    build_images(registry, offline=offline)
    secrets = STATE_DIR / "secret-values.yaml"
    write_private(secrets, json.dumps({"faults": {"token": faults_token()}}) + "\n")
    values = helm_values(
        public_key=AUTH_DIR / "issuer.pub", tokens=tokens, offline=pieces, secrets=secrets
    )
    run(helm_install(helm, values))
    start_forwarding()
    wait_for_forwards(found)
    print(f"bookshop is up on minikube (namespace {namespace()}; make k8s-down stops it):")
    for service in registry.values():
        print(service_registry.banner_line(service, f"http://localhost:{service.port}"))
    print("  Jaeger      http://localhost:16686")
    print("  Prometheus  http://localhost:9090         alerts http://localhost:9090/alerts")
    if offline:
        print("  Grafana     not installed: no offline stand-in (OFFLINE=1)")
    else:
        print("  Grafana     http://localhost:3000         (anonymous viewer; the admin password:")
        print(f"              kubectl -n {namespace()} get secret {RELEASE}-grafana "
              "-o jsonpath='{.data.admin-password}' | base64 -d)")  # fmt: skip
    print(f"  forwards    kept up in the background: {FORWARD_LOG}")


def faults_token() -> str:
    return os.environ.get("FAULTS__TOKEN") or DEV_FAULTS_TOKEN


def mint_tokens(registry: Mapping[str, service_registry.ServiceManifest]) -> dict[str, Path]:
    """Every credential's token, signed by the dev issuer of .dev/auth (made once)."""
    issuer = DevIssuer.in_directory(AUTH_DIR)
    tokens = {}
    for name, service in registry.items():
        for dependency, scopes in service.credentials.items():
            path = STATE_DIR / f"{name}-{dependency}.jwt"
            token = issuer.mint(
                audience=dependency, scopes=list(scopes), subject=name, ttl_seconds=TOKEN_SECONDS
            )
            write_private(path, token)
            tokens[f"{name}-{dependency}"] = path
    return tokens


def write_private(path: Path, text: str) -> None:
    """``text`` in a file only its owner may read, from the first byte."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def build_images(
    registry: Mapping[str, service_registry.ServiceManifest], *, offline: bool
) -> None:
    """compose's build into minikube's Docker engine; then each image must be there."""
    environment = {**os.environ, **minikube_docker_env(), "GIT_COMMIT": git_commit()}
    run([sys.executable, str(COMPOSE_DIR / "generate.py")])
    run(compose_build(registry, offline=offline), environment)
    for name in registry:
        found = capture(
            ["docker", "image", "inspect", "--format", "{{.Id}}", image_name(name)], environment
        )
        if found.returncode != 0:
            raise Failure(f"{image_name(name)} is not in minikube's Docker engine after the build")


def minikube_docker_env() -> dict[str, str]:
    """What `eval $(minikube docker-env)` sets: the docker CLI then talks to minikube's engine."""
    result = capture(["minikube", "--profile", profile(), "docker-env", "--shell", "bash"])
    if result.returncode != 0:
        raise Failure(
            f"minikube docker-env failed ({result.stderr.strip()}): k8s-up builds the images in "
            "minikube's Docker engine, its default container runtime "
            "(minikube start --container-runtime=docker)"
        )
    found = dict(re.findall(r'^export (\w+)="(.*)"$', result.stdout, re.MULTILINE))
    if "DOCKER_HOST" not in found:
        raise Failure(f"minikube docker-env named no DOCKER_HOST: {result.stdout.strip()}")
    return found


def load_offline_images() -> dict[str, tuple[str, dict[str, int]]]:
    """Load the stand-ins into the cluster from the local engine; each piece's image and ids."""
    images = offline_images()
    pieces = {}
    for piece, (variable, user) in OFFLINE_INFRASTRUCTURE.items():
        ids = {}
        if user is not None:
            uid, gid = (
                image_id(images[variable], "-u", user),
                image_id(images[variable], "-g", user),
            )
            ids = {"runAsUser": uid, "runAsGroup": gid, "fsGroup": gid}
        pieces[piece] = (images[variable], ids)
    for image in (images["PYTHON_IMAGE"], *(image for image, _ in pieces.values())):
        run(["minikube", "--profile", profile(), "image", "load", image])
    return pieces


def image_id(image: str, flag: str, user: str) -> int:
    """The uid (-u) or gid (-g) of ``user`` in ``image`` (in the local engine)."""
    result = capture(["docker", "run", "--rm", "--entrypoint", "id", image, flag, user])
    if result.returncode != 0:
        raise Failure(
            f"{image}: no user {user} ({result.stderr.strip()}); make offline-images builds it"
        )
    return int(result.stdout)


def git_commit() -> str:
    return capture(["git", "rev-parse", "--short=12", "HEAD"]).stdout.strip() or "unknown"


def capture(
    command: Sequence[str], environment: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``command``'s output; a command that hangs past STATUS_TIMEOUT_SECONDS is a Failure."""
    try:
        return subprocess.run(
            command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False,
            timeout=STATUS_TIMEOUT_SECONDS,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        raise Failure(
            f"{' '.join(command)} did not answer in {STATUS_TIMEOUT_SECONDS} s"
        ) from error


def run(command: Sequence[str], environment: Mapping[str, str] | None = None) -> None:
    print("+ " + " ".join(command), flush=True)
    if subprocess.run(command, cwd=ROOT, env=environment, check=False).returncode != 0:
        raise Failure(f"{' '.join(command[:3])} ... failed (see above)")


# -- forwarding -----------------------------------------------------------------------------------


def start_forwarding() -> None:
    """`run.py forward` in the background, in a session of its own, its output in the log."""
    with FORWARD_LOG.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, "forward"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=ROOT,
        )  # fmt: skip
    FORWARD_PID.write_text(f"{process.pid}\n", encoding="utf-8")


def wait_for_forwards(found: Sequence[Forward]) -> None:
    deadline = time.monotonic() + FORWARD_TIMEOUT_SECONDS
    waiting = list(found)
    while waiting:
        waiting = [forward for forward in waiting if not port_in_use(forward.local)]
        if waiting and time.monotonic() > deadline:
            raise Failure(
                f"no forward on {', '.join(f':{forward.local}' for forward in waiting)} after "
                f"{FORWARD_TIMEOUT_SECONDS:.0f} s: see {FORWARD_LOG}"
            )
        time.sleep(0.5)


def stop_forwarding() -> None:
    """Stop the background forwards of an earlier `up`: only if the recorded process is still
    that forwarder (a stale file after a reboot may name another process)."""
    try:
        pid = int(FORWARD_PID.read_text(encoding="utf-8"))
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        FORWARD_PID.unlink(missing_ok=True)
        return
    if Path(__file__).name.encode() in b" ".join(command) and b"forward" in command:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        else:
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
    FORWARD_PID.unlink(missing_ok=True)


def forward() -> None:
    """Keep the forwards up until SIGTERM."""
    registry = service_registry.python_services()
    grafana = capture(kubectl("get", "service", "grafana", "--ignore-not-found", "-o", "name"))
    forwarder = Forwarder(
        forwards(registry, grafana=bool(grafana.stdout.strip())),
        lambda item: kubectl(
            "port-forward",
            "--address",
            HOST,
            f"service/{item.service}",
            f"{item.local}:{item.remote}",
        ),
        log=lambda line: print(line, flush=True),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        forwarder.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    forwarder.run()


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


# -- down -----------------------------------------------------------------------------------------


def down(*, volumes: bool) -> None:
    stop_forwarding()
    helm = installed("kubectl")
    release = [RELEASE, "--kube-context", profile(), "--namespace", namespace()]
    if capture([helm, "status", *release]).returncode == 0:
        run([helm, "uninstall", *release, "--wait"])
    else:
        print(
            f"no release {RELEASE} in namespace {namespace()} of {profile()}: nothing to uninstall"
        )
    if volumes:
        run(kubectl("delete", "namespace", namespace(), "--ignore-not-found", "--wait"))
    else:
        print(
            "PostgreSQL's volume and passwords are kept for the next k8s-up "
            "(VOLUMES=1 deletes them)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up").add_argument("--offline", action="store_true")
    commands.add_parser("down").add_argument("--volumes", action="store_true")
    commands.add_parser("forward")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "up":
            up(offline=arguments.offline)
        elif arguments.command == "down":
            down(volumes=arguments.volumes)
        else:
            forward()
    except Failure as failure:
        print(f"make k8s-{arguments.command}: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
