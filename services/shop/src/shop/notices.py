"""Best-effort notices to a book's chat room after an order is confirmed.

Sent from a small background pool, so chat being slow or down never slows an order; the chat
client has a short deadline, no retries and its own breaker. A full queue drops the notice.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chassis import ProblemError, ServiceClient, get_logger

log = get_logger("shop.notices")
MAX_QUEUED = 100


class ChatNotices:
    def __init__(self, chat: ServiceClient) -> None:
        self.chat = chat
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="shop-notices")
        self._slots = threading.BoundedSemaphore(MAX_QUEUED)

    def order_confirmed(self, order: dict[str, Any]) -> None:
        for item in order["items"]:
            if not self._slots.acquire(blocking=False):
                log.warning("notice dropped: queue full", order_id=order["id"])
                return
            text = (
                f"Someone just ordered {item['quantity']} "
                f"{'copy' if item['quantity'] == 1 else 'copies'} of this book."
            )
            # The copied context keeps the notice in the order's trace.
            context = contextvars.copy_context()
            self._pool.submit(context.run, self._post, item["book_id"], text, order["id"])

    def _post(self, book_id: int, text: str, order_id: str) -> None:
        try:
            self.chat.post(
                "/rooms/{room}/messages",
                room=f"book-{book_id}",
                json={"author": "shop", "text": text},
            )
        except ProblemError as exc:  # chat down, slow or its breaker open: best effort
            log.info("chat notice not delivered", order_id=order_id, reason=exc.detail)
        except Exception:
            log.exception("chat notice failed", order_id=order_id)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
