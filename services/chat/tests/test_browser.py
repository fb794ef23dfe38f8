"""The web page in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a real ``chat serve``: live updates between two pages, and message text that is never
interpreted as HTML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chassis.testing.plugin import running_in_ci

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = REPO_ROOT / "artifacts" / "chat-page.png"
XSS = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 10_000


def _unavailable(reason: str) -> None:
    if running_in_ci():
        pytest.fail(f"CI requires the browser test: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (uv sync)")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
        except Error as exc:
            _unavailable(f"Chromium did not start: {exc.message.splitlines()[0]}")
        yield browser
        browser.close()


class Watched:
    """A page plus the dialogs it opened and the script errors it raised."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1000, "height": 640})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def post(self, author: str, text: str) -> None:
        self.page.fill("#author", author)
        self.page.fill("#text", text)
        self.page.click("#send")

    def texts(self) -> list[str]:
        texts: list[str] = self.page.locator("#messages li .text").all_text_contents()
        return texts


def test_two_pages_chat_live_and_never_run_message_text(
    browser: Any, module_chat: Any, record_property: Any
) -> None:
    from playwright.sync_api import expect

    first = Watched(browser, f"{module_chat.url}/#book-1")
    second = Watched(browser, f"{module_chat.url}/#book-1")
    for watched in (first, second):
        expect(watched.page.locator("#room-title")).to_have_text("Book 1: Dune")
        expect(watched.page.locator("#status")).to_have_attribute("data-state", "live")
    second.page.evaluate("window.notReloaded = true")

    first.post("ann", "Hello from the first page")

    for watched in (first, second):
        expect(watched.page.locator("#messages li .text")).to_have_text(
            ["Hello from the first page"]
        )
    expect(second.page.locator("#messages li .author")).to_have_text(["ann"])
    expect(first.page.locator("#text")).to_have_value("")  # the form is ready for the next one

    first.post("mallory", XSS)

    for watched in (first, second):
        expect(watched.page.locator("#messages li")).to_have_count(2)
        expect(watched.page.locator("#messages li .text").last).to_have_text(XSS)
        assert watched.texts() == ["Hello from the first page", XSS]
        assert watched.page.locator("#messages img").count() == 0
        assert watched.page.locator("img").count() == 0
    second.page.wait_for_timeout(300)  # give a would-be onerror handler the time to fire
    assert second.page.evaluate("window.notReloaded") is True  # live, not reloaded
    assert first.dialogs == second.dialogs == []
    assert first.errors == second.errors == []
    expect(first.page.locator("#error")).to_have_text("")

    second.post("bob", "Replying from the second page")
    expect(first.page.locator("#messages li .text").last).to_have_text(
        "Replying from the second page"
    )
    assert_form_laid_out(first.page)

    SCREENSHOT.parent.mkdir(exist_ok=True)
    first.page.screenshot(path=str(SCREENSHOT), full_page=True)
    record_property("screenshot", str(SCREENSHOT))
    print(f"\nscreenshot: {SCREENSHOT}")
    for watched in (first, second):
        watched.context.close()


def assert_form_laid_out(page: Any) -> None:
    """Name, message and button sit side by side without overlapping; the message box takes
    the room that is left."""
    form, author, text, send = (
        page.locator(selector).bounding_box() for selector in ("#post", "#author", "#text", "#send")
    )
    assert author["x"] + author["width"] <= text["x"], (author, text)
    assert text["x"] + text["width"] <= send["x"], (text, send)
    assert send["x"] + send["width"] <= form["x"] + form["width"] + 1, (send, form)
    assert text["width"] > form["width"] / 2, (text, form)


def test_the_page_marks_unverified_messages_and_shows_problems(
    browser: Any, module_chat: Any, module_fake_books: Any
) -> None:
    from playwright.sync_api import expect

    module_fake_books.close()  # books is down: the room has no title, messages are unverified
    try:
        watched = Watched(browser, f"{module_chat.url}/#book-2")
        page = watched.page
        expect(page.locator("#room-title")).to_have_text("Book 2")
        expect(page.locator("#status")).to_have_attribute("data-state", "live")

        watched.post("ann", "posted while books is down")

        expect(page.locator("#messages li .text")).to_have_text(["posted while books is down"])
        expect(page.locator("#messages li .badge")).to_have_text(["unverified"])
    finally:
        module_fake_books.restart()

    page.fill("#room", "nowhere")
    page.click("#choose button")
    expect(page.locator("#error")).to_contain_text("nowhere")
    expect(page.locator("#room-title")).to_have_text("No room open")
    expect(page.locator("#messages li")).to_have_count(0)
    assert watched.dialogs == []
    assert watched.errors == []
    watched.context.close()
