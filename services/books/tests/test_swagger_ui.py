"""Swagger UI (/ui/) in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a real ``books serve``: "Try it out" on an operation reaches the API and shows the
live answer, both directly and through a reverse proxy on another port that rewrites the Host
header (as nginx's ``proxy_pass`` does by default), under the page's Content-Security-Policy
(its inline initializer allowed by hash: no violation, while an injected inline script is
refused). The ``browser`` fixture is the chassis plugin's: skipped locally without Chromium, a
failure under CI."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, pool
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from books.seed import seed_catalog
from books.settings import SERVICE_DIR
from chassis import migrations
from chassis.dev_issuer import DevIssuer
from chassis.testing import ServiceProcess, clean_environment
from chassis.testing.browser import INJECT_INLINE_SCRIPT, RECORD_CSP_VIOLATIONS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TIMEOUT_MS = 10_000
# Not forwarded by a proxy (RFC 9110 7.6.1), plus what it recomputes for the decoded body.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"}
RECOMPUTED = {"content-length", "content-encoding"}
DUNE = {"id": 1, "isbn": "9780441172719", "title": "Dune", "author": "Frank Herbert"}


@pytest.fixture(scope="module")
def books_process(
    tmp_path_factory: pytest.TempPathFactory, token_issuer: DevIssuer
) -> Iterator[ServiceProcess]:
    """``books serve`` on a migrated SQLite file holding the demo catalogue (book 1 is Dune),
    trusting ``token_issuer``."""
    folder = tmp_path_factory.mktemp("books")
    url = f"sqlite:///{folder / 'books.db'}"
    migrations.upgrade(SERVICE_DIR / "migrations", url)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with Session(engine) as session, session.begin():
            seed_catalog(session)
    finally:
        engine.dispose()
    books = ServiceProcess(
        "books",
        env=clean_environment(DATABASE_URL=url, AUTH__PUBLIC_KEY=token_issuer.public_pem()),
        log_path=folder / "books.log",
    )
    try:
        books.start()
        yield books
    finally:
        books.kill()


class ReverseProxy:
    """A GET-only reverse proxy on its own port, in a thread. Like nginx's default
    ``proxy_pass``, it sends the upstream's host in ``Host``: the service never learns the
    origin the browser used."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.forwarded: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                skipped = HOP_BY_HOP | {"host"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skipped}
                answer = httpx.get(proxy.upstream + self.path, headers=headers, timeout=10)
                proxy.forwarded.append(self.path)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in HOP_BY_HOP | RECOMPUTED:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        return Forward


@pytest.fixture(scope="module")
def proxy(books_process: ServiceProcess) -> Iterator[ReverseProxy]:
    proxy = ReverseProxy(books_process.url)
    yield proxy
    proxy.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


@pytest.mark.parametrize("via", ["direct", "proxy"])
def test_try_it_out_reads_a_book_through_swagger_ui(
    page: Page, books_process: ServiceProcess, proxy: ReverseProxy, via: str
) -> None:
    from playwright.sync_api import expect

    base = books_process.url if via == "direct" else proxy.url
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/ui/")

    servers = page.locator(".servers select")
    expect(servers.locator("option")).to_have_text(["/"])  # one usable server, not a blank one
    expect(servers).to_have_value("/")

    operation = page.locator("#operations-books-get_book")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator('tr[data-param-name="book_id"] input').fill("1")
    with page.expect_response(lambda response: "/books/1" in response.url) as answer:
        operation.get_by_role("button", name="Execute").click()

    assert answer.value.url == f"{base}/books/1"
    assert answer.value.status == 200
    live = operation.locator(".live-responses-table")
    expect(live.locator("tbody .response-col_status")).to_have_text("200")
    body = live.locator("tbody .response-col_description .highlight-code code")
    expect(body).to_contain_text('"title": "Dune"')
    shown = json.loads(body.inner_text())
    assert {key: shown[key] for key in DUNE} == DUNE
    expect(operation.locator(".request-url pre")).to_have_text(f"{base}/books/1")
    assert errors == []
    assert page.evaluate("window.cspViolations") == []
    if via == "proxy":
        assert "/books/1" in proxy.forwarded


def test_swagger_ui_runs_under_a_policy_that_refuses_injected_inline_script(
    page: Page, books_process: ServiceProcess
) -> None:
    from playwright.sync_api import expect

    response = page.goto(f"{books_process.url}/ui/")

    assert response is not None
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    expect(page.locator("#operations-books-get_book")).to_be_visible()  # the initializer ran
    assert page.evaluate("window.cspViolations") == []
    assert page.evaluate(INJECT_INLINE_SCRIPT) is False
    page.wait_for_function("window.cspViolations.length > 0")
    assert page.evaluate("window.cspViolations") == ["script-src-elem inline"]


def test_the_served_document_names_a_usable_server(client: TestClient) -> None:
    # openapi.yaml says "servers: [{url: /}]"; connexion alone would serve "".
    for spec_url in ("/openapi.json", "/openapi.yaml"):
        response = client.get(spec_url)
        assert response.status_code == 200, spec_url
        assert yaml.safe_load(response.text)["servers"] == [{"url": "/"}], spec_url


def add_book_in_swagger_ui(page: Page, isbn: str) -> Any:
    """Try it out on POST /books with a valid book; the answer Swagger UI received."""
    operation = page.locator("#operations-books-create_book")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    book = {"isbn": isbn, "title": "Kindred", "author": "Octavia E. Butler", "price": "8.50"}
    operation.locator("textarea.body-param__text").fill(json.dumps(book))
    with page.expect_response(lambda response: response.url.endswith("/books")) as answer:
        operation.get_by_role("button", name="Execute").click()
    return answer.value


def test_the_authorize_button_takes_a_token_that_then_writes(
    page: Page, books_process: ServiceProcess, token_issuer: DevIssuer
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{books_process.url}/ui/")
    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".auth-container").filter(has_text="bearerAuth")
    token = token_issuer.mint(audience="books", scopes=["catalog:write"])
    dialog.locator("input").fill(token)
    dialog.get_by_role("button", name="Authorize", exact=True).click()
    expect(dialog.get_by_role("button", name="Logout")).to_be_visible()
    page.locator(".modal-ux .close-modal").click()

    answer = add_book_in_swagger_ui(page, isbn="9780807083697")

    assert answer.status == 201
    assert answer.request.headers["authorization"] == f"Bearer {token}"
    assert page.evaluate("window.cspViolations") == []


def test_without_authorizing_swagger_ui_shows_the_401(
    page: Page, books_process: ServiceProcess
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{books_process.url}/ui/")
    expect(page.locator("#operations-books-create_book .authorization__btn")).to_be_visible()

    answer = add_book_in_swagger_ui(page, isbn="9780807083680")

    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="books"'
    live = page.locator("#operations-books-create_book .live-responses-table")
    expect(live.locator("tbody .response-col_status")).to_have_text("401")
