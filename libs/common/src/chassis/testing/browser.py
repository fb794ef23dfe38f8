"""A real headless Chromium for browser tests: Debian's ``chromium`` (``apt-get install
chromium``) driven by Playwright. Playwright's own browser downloads are never used.

    with launch_chromium() as browser:          # BrowserUnavailable when it cannot run
        page = browser.new_page()

    with chromium_or_skip(required=running_in_ci()) as browser:
        ...                                     # skipped (or failed, if required) without one

The chassis pytest plugin's ``browser`` fixture is ``chromium_or_skip`` required under CI.

Exceptions::

    RuntimeError
     └── BrowserUnavailable   Playwright is missing, Chromium is missing or does not start
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
# Headless in a container as root: no sandbox (needs user namespaces), no GPU, /tmp rather
# than a small /dev/shm, and nothing that phones home or updates itself during a test.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserUnavailable(RuntimeError):
    """No browser can run here: Playwright or Chromium is missing, or Chromium did not start."""


# Scripts for Content-Security-Policy checks. RECORD_CSP_VIOLATIONS goes to
# ``context.add_init_script`` (it runs before any script of the page) and collects every
# violation the page reports in ``window.cspViolations``; INJECT_INLINE_SCRIPT is for
# ``page.evaluate`` and answers whether an inline script a page adds would run.
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""
INJECT_INLINE_SCRIPT = """() => {
  const script = document.createElement("script");
  script.textContent = "window.injected = true";
  document.body.append(script);
  return window.injected === true;
}"""


@contextmanager
def launch_chromium(
    executable: Path = CHROMIUM, *, args: Sequence[str] = CHROMIUM_ARGS
) -> Iterator[Browser]:
    """A headless Chromium (``executable``) under Playwright's sync API, closed afterwards."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise BrowserUnavailable("playwright is not installed (uv sync)") from None
    if not executable.exists():
        raise BrowserUnavailable(f"{executable} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(executable), headless=True, args=list(args)
            )
        except Error as exc:
            first_line = exc.message.splitlines()[0] if exc.message else type(exc).__name__
            raise BrowserUnavailable(f"Chromium did not start: {first_line}") from exc
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_or_skip(
    *, required: bool, executable: Path = CHROMIUM, args: Sequence[str] = CHROMIUM_ARGS
) -> Iterator[Browser]:
    """:func:`launch_chromium` for a test: skips the test when no browser can run, or fails it
    when ``required`` (under CI a missing browser must not pass silently)."""
    with ExitStack() as stack:
        try:
            browser = stack.enter_context(launch_chromium(executable, args=args))
        except BrowserUnavailable as exc:
            if required:
                pytest.fail(f"CI requires the browser test: {exc}", pytrace=False)
            pytest.skip(str(exc))
        yield browser
