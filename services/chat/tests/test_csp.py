"""The chat page under its Content-Security-Policy (the chassis' SecurityHeadersMiddleware):
nothing inline, so its script and styles are files (``/app.js``, ``/app.css``) served with
their type and a validator; in a real Chromium the page works without a single violation and
an injected inline script is refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from chassis.testing.browser import INJECT_INLINE_SCRIPT, RECORD_CSP_VIOLATIONS
from chat.settings import SERVICE_DIR

WEB = SERVICE_DIR / "web"
TIMEOUT_MS = 10_000


def policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


def test_the_page_is_sent_with_a_policy_that_runs_nothing_inline(client: TestClient) -> None:
    page = client.get("/")

    assert page.status_code == 200
    found = policy(page.headers["content-security-policy"])
    assert found["script-src"] == ["'self'"]
    assert found["style-src"] == ["'self'"]
    for directive in ("frame-ancestors", "object-src", "base-uri"):
        assert found[directive] == ["'none'"], directive
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="app.js">']
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)">', html) == ["app.css"]
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html), "a style attribute"
    assert not re.search(r"\son[a-z]+\s*=", html), "an event handler attribute"
    assert "javascript:" not in html


@pytest.mark.parametrize(
    ("path", "media_type"), [("/app.js", "text/javascript"), ("/app.css", "text/css")]
)
def test_the_page_files_are_served_with_their_type_and_revalidated(
    client: TestClient, path: str, media_type: str
) -> None:
    first = client.get(path)

    assert first.status_code == 200
    assert first.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["cache-control"] == "no-cache"
    assert first.content == (WEB / path.lstrip("/")).read_bytes()
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)

    for if_none_match in (etag, f'"old", W/{etag}', "*"):
        again = client.get(path, headers={"If-None-Match": if_none_match})
        assert again.status_code == 304, if_none_match
        assert again.content == b""
        assert (again.headers["etag"], again.headers["cache-control"]) == (etag, "no-cache")
    stale = client.get(path, headers={"If-None-Match": '"an-older-version"'})
    assert stale.status_code == 200
    assert stale.content == first.content


def test_in_a_browser_the_page_breaks_no_rule_and_inline_script_is_refused(
    browser: Any, module_chat: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        page.goto(f"{module_chat.url}/#book-4")

        expect(page.locator("#room-title")).to_have_text("Book 4: Foundation")  # app.js ran
        expect(page.locator("#status")).to_have_attribute("data-state", "live")
        assert page.evaluate("getComputedStyle(document.body).display") == "flex"  # app.css
        page.fill("#author", "ann")
        page.fill("#text", "Psychohistory!")
        page.click("#send")
        expect(page.locator("#messages li .text")).to_have_text(["Psychohistory!"])
        # set through the CSSOM, which the policy leaves alone
        assert page.locator("#messages .avatar").evaluate("e => e.style.background")
        assert page.evaluate("window.cspViolations") == []

        assert page.evaluate(INJECT_INLINE_SCRIPT) is False
        page.wait_for_function("window.cspViolations.length > 0")
        assert page.evaluate("window.cspViolations") == ["script-src-elem inline"]
        assert any("Content Security Policy" in text for text in console), console
    finally:
        context.close()
