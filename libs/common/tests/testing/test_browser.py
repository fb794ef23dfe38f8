"""chassis.testing.browser and the plugin's ``browser`` fixture: Debian's Chromium under
Playwright, skipped (or failed under CI) where it cannot run."""

from __future__ import annotations

import builtins
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chassis.testing.browser import BrowserUnavailable, chromium_or_skip, launch_chromium
from chassis.testing.plugin import running_in_ci

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def enter(manager: AbstractContextManager[Any]) -> None:
    with manager:
        pytest.fail("the block must not run")


def test_the_fixture_is_a_working_headless_chromium(browser: Browser) -> None:
    page = browser.new_page()
    page.set_content("<p id='x'>hello</p><script>document.title = 'ran'</script>")

    assert page.locator("#x").text_content() == "hello"
    assert page.title() == "ran"  # scripts run
    assert "Headless" in browser.new_page().evaluate("navigator.userAgent")
    assert browser.is_connected()


def test_a_missing_chromium_is_reported_with_how_to_install_it(tmp_path: Path) -> None:
    missing = tmp_path / "chromium"

    with pytest.raises(BrowserUnavailable, match=r"chromium is missing \(apt-get install"):
        enter(launch_chromium(missing))


def test_a_chromium_that_does_not_start_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)

    with pytest.raises(BrowserUnavailable, match="Chromium did not start"):
        enter(launch_chromium(broken))


def test_without_playwright_the_reason_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_playwright(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("playwright"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_playwright)

    with pytest.raises(BrowserUnavailable, match="playwright is not installed"):
        enter(launch_chromium())


def test_without_a_browser_a_test_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="is missing"):
        enter(chromium_or_skip(required=False, executable=tmp_path / "chromium"))


def test_without_a_browser_a_test_that_requires_one_fails(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"CI requires the browser test: .*is missing"):
        enter(chromium_or_skip(required=True, executable=tmp_path / "chromium"))


def test_the_browser_is_closed_after_the_block_even_when_it_raises() -> None:
    launched: list[Browser] = []

    def use_and_fail() -> None:
        with chromium_or_skip(required=running_in_ci()) as browser:
            launched.append(browser)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_and_fail()

    assert not launched[0].is_connected()
