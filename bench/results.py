"""The figures of `make bench` as JSON, beside what it prints: bench/results/latest.json
(git-ignored), one object the benchmark scripts each add their part to.

    per contender {"rps", "cpu_us"} (bench/run.py), "ceiling_share" (books' req/s over the raw
    ASGI ceiling's; null while make bench has no ceiling contender), "rss_mib" (books after its
    requests), "start_ms", "migrate_rss_mib", "seed_rss_mib", "order_knee_per_s"
    (bench/order_capacity.py; null when no step was healthy), and "measured" (when, the CPU
    count and load average of the last script that wrote).

bench/run.py, the first step of `make bench`, starts the file afresh; the later steps merge
their keys into it, so one `make bench` leaves all of them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LATEST = Path(__file__).resolve().parent / "results" / "latest.json"


def record(figures: dict[str, Any], *, fresh: bool = False, path: Path | None = None) -> Path:
    """Merges ``figures`` into ``path`` (LATEST by default; ``fresh``: replaces what was there)
    and stamps when."""
    path = path or LATEST
    current: dict[str, Any] = {}
    if not fresh and path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = None
        current = loaded if isinstance(loaded, dict) else {}
    current.update(figures)
    current["measured"] = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)  # never a half-written file
    return path
