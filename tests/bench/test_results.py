"""bench/results.py and what the benchmark scripts give it: the JSON `make bench` leaves in
bench/results/latest.json (the scripts' figures themselves are not tested: they are measured)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chassis.testing import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    module = load_script(ROOT / "bench" / "results.py", "bench_results")
    monkeypatch.setattr(module, "LATEST", tmp_path / "results" / "latest.json")
    return module


def test_each_script_adds_its_figures_and_the_first_starts_afresh(results: object) -> None:
    record = results.record  # type: ignore[attr-defined]
    latest: Path = results.LATEST  # type: ignore[attr-defined]
    record({"books": {"rps": 1.0}, "stale": 1})
    record({"books": {"rps": 2469.0, "cpu_us": 434.0}, "rss_mib": 80.5}, fresh=True)
    record({"order_knee_per_s": 60})

    written = json.loads(latest.read_text())
    assert "stale" not in written
    assert written["books"] == {"rps": 2469.0, "cpu_us": 434.0}
    assert (written["rss_mib"], written["order_knee_per_s"]) == (80.5, 60)
    assert set(written["measured"]) == {"at", "cpus", "load_average"}
    assert not list(latest.parent.glob("*.tmp")), "written through a temporary file"


def test_an_unreadable_file_is_replaced_not_fatal(results: object) -> None:
    latest: Path = results.LATEST  # type: ignore[attr-defined]
    latest.parent.mkdir(parents=True)
    latest.write_text("{half")
    results.record({"start_ms": 512})  # type: ignore[attr-defined]
    assert json.loads(latest.read_text())["start_ms"] == 512


def test_run_py_keeps_the_medians_and_no_ceiling_share_without_a_ceiling() -> None:
    run = load_script(ROOT / "bench" / "run.py", "bench_run")
    books = run.Result(run.Contender("books", "books", []), rps=[900.0, 1000.0, 1100.0])
    books.cpu_us = [400.0, 430.0, 500.0]
    ceiling = run.Result(run.Contender("asgi-ceiling", "raw ASGI", []), rps=[2000.0])
    ceiling.cpu_us = [200.0]
    startup = ([700.0, 650.0, 900.0], 60 * 1024, 82 * 1024)
    commands = {"migrate": (0.5, 56 * 1024), "seed": (0.8, 62 * 1024)}

    alone = run.figures({"books": books}, startup, commands)
    assert alone["books"] == {"rps": 1000.0, "cpu_us": 430.0}
    assert alone["ceiling_share"] is None
    assert (alone["rss_mib"], alone["start_ms"]) == (82.0, 700)
    assert (alone["migrate_rss_mib"], alone["seed_rss_mib"]) == (56.0, 62.0)
    both = run.figures({"books": books, "asgi-ceiling": ceiling}, None, {})
    assert both["ceiling_share"] == 0.5
    assert both["rss_mib"] is None
