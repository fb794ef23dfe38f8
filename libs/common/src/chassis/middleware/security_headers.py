"""Security headers on every response, added as the response starts (the body is never read).

- ``X-Content-Type-Options: nosniff`` on every response: a browser never guesses another type
  than the declared one (JSON holding markup in a text field is never rendered as a page).
- On documents a browser renders and could run script in (``text/html``, XHTML, SVG): a
  ``Content-Security-Policy`` (:func:`content_security_policy`: the page's own origin only, no
  inline script or style, no plugins, no ``<base>``, never framed) and ``X-Frame-Options: DENY``
  for browsers older than ``frame-ancestors``.

A header the application set itself is kept: a page that needs a policy of its own sends one
(Swagger UI's allows its inline initializer by hash: api_docs.py) and gets only what is missing.
The header lines are encoded once, here; per response only the header names are looked at.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = b"content-security-policy"
CONTENT_TYPE = b"content-type"
# Media types a browser renders as a document that can run script.
DOCUMENT_TYPES = frozenset({b"text/html", b"application/xhtml+xml", b"image/svg+xml"})


def content_security_policy(*, scripts: Iterable[str] = (), styles: Iterable[str] = ()) -> str:
    """The policy of a chassis page: scripts, styles, images (``data:`` too, as stylesheets
    embed icons) and requests from the page's own origin only. ``scripts`` and ``styles`` add
    sources to ``script-src`` and ``style-src``, e.g. an inline block's :func:`source_hash`."""
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *scripts]),
            " ".join(["style-src 'self'", *styles]),
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def source_hash(content: str) -> str:
    """The CSP source (``'sha256-...'``) that allows an inline ``<script>`` or ``<style>``
    whose text is ``content``: what the browser hashes is the element's text after the HTML
    parser turned every line break into LF."""
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


DOCUMENT_POLICY = content_security_policy()


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, document_policy: str = DOCUMENT_POLICY) -> None:
        """``document_policy``: the Content-Security-Policy of documents that set none."""
        self.app = app
        self._every = ((b"x-content-type-options", b"nosniff"),)
        self._documents = (
            *self._every,
            (CONTENT_SECURITY_POLICY, document_policy.encode("latin-1")),
            (b"x-frame-options", b"DENY"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = self._with_headers(message)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _with_headers(self, message: Message) -> Message:
        headers = list(message.get("headers", ()))
        present = set()
        document = False
        for name, value in headers:
            lowered = bytes(name).lower()
            present.add(lowered)
            if lowered == CONTENT_TYPE:
                document = bytes(value).split(b";", 1)[0].strip().lower() in DOCUMENT_TYPES
        wanted = self._documents if document else self._every
        missing = [header for header in wanted if header[0] not in present]
        if not missing:
            return message
        return {**message, "headers": [*headers, *missing]}
