"""What ``/info`` and the ``service_info`` metric say about this process."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

COMMIT_VARIABLE = "GIT_COMMIT"


@dataclass(frozen=True)
class ServiceInfo:
    service: str
    version: str
    commit: str
    environment: str
    started_at: str
    python_version: str
    chassis_version: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def collect_info(
    service: str, service_version: str, environment: str, source_dir: Path
) -> ServiceInfo:
    return ServiceInfo(
        service=service,
        version=service_version,
        commit=git_commit(source_dir),
        environment=environment,
        started_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        python_version=platform.python_version(),
        chassis_version=_distribution_version("chassis"),
    )


def git_commit(source_dir: Path) -> str:
    """GIT_COMMIT when the image build set it, else the checkout's HEAD, else ``unknown``."""
    if commit := os.environ.get(COMMIT_VARIABLE):
        return commit
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH is intended
            cwd=source_dir,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _distribution_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"
