"""The ledger's pending rows, written one keyset page of subscribers at a time, ahead of the claims."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from newsletter.delivery import ledger

PAGE_SIZE = 5000


class PendingPages:
    """Writes the ledger's pending rows one keyset page of subscribers at a time.

    It keeps a rough count of the pending rows this process wrote and has not
    claimed yet, only to decide when to write the next page (while a request is
    out, rather than between two requests). Correctness never depends on it:
    other processes may claim those rows, and an empty claim always asks for
    the next page before the send ends. Thread-safe: a page may be written on a
    thread of its own while another thread claims (a claim that finds nothing waits
    for the page being written, then writes the next one itself).
    """

    def __init__(self, engine: Engine, issue_id: str, *, page_size: int) -> None:
        self._engine = engine
        self._issue_id = issue_id
        self._page_size = page_size
        self._cursor = 0
        self._unclaimed = 0
        self._lock = threading.Lock()
        self.exhausted = False

    def fill(self, *, force: bool = False) -> bool:
        """Write the next page; False when the scan found no subscriber past the cursor."""
        with self._lock:
            if self.exhausted and not force:
                return False
            before = self._cursor
            self._cursor, self.exhausted, written = ledger.materialize_page(
                self._engine, self._issue_id, self._cursor, self._page_size
            )
            self._unclaimed += written
            return self._cursor != before

    def fill_if_low(self, batch_size: int) -> None:
        with self._lock:
            low = not self.exhausted and self._unclaimed < 2 * batch_size
        if low:
            self.fill()

    def claimed(self, count: int) -> None:
        with self._lock:
            self._unclaimed = max(0, self._unclaimed - count)
