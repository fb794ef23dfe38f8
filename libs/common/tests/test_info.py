import re
from pathlib import Path

import pytest

from chassis.info import collect_info, git_commit

HERE = Path(__file__).parent


def test_git_commit_prefers_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_COMMIT", "feedbeef")

    assert git_commit(HERE) == "feedbeef"


def test_git_commit_reads_the_checkout() -> None:
    assert re.fullmatch(r"[0-9a-f]{12}", git_commit(HERE))


def test_git_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"


def test_git_commit_without_git_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")

    assert git_commit(HERE) == "unknown"


def test_collect_info(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_COMMIT", "feedbeef")

    info = collect_info("books", "1.0.0", "production", HERE).as_json()

    assert info["service"] == "books"
    assert info["version"] == "1.0.0"
    assert info["commit"] == "feedbeef"
    assert info["environment"] == "production"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["started_at"])
    assert re.fullmatch(r"3\.\d+\.\d+.*", info["python_version"])
    assert info["chassis_version"] != "unknown"
