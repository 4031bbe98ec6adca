"""A local stand-in for SendGrid's v3 ``POST /v3/mail/send`` on 127.0.0.1.

Behaves like the real endpoint as far as a sender can tell: checks the bearer
key, the JSON body's shape (personalizations 1..1000 each with its own ``to``,
string-valued ``headers``/``substitutions``/``custom_args``, ``from``,
``subject``, ``content`` with text/plain before text/html, ≤ 10 categories),
answers 202 with ``X-Message-Id``, and 400 with ``{"errors": [{"message",
"field", "help"}]}`` for a bad body. Failures are programmable (``fail_next``),
responses can be slowed (``delay``), and every accepted request's
personalizations are recorded for assertions.

    with FakeSendGrid() as server:
        server.fail_next(429, reset_in=1)
        ... NEWSLETTER_SENDGRID_API_URL=server.url ...
        server.addresses()   # every accepted "to" address, in order
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "SG.test-key"
MAX_BODY = 30 * 1024 * 1024


@dataclass
class Failure:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeSendGrid


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence
        return None

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self._reply(404, {"errors": [{"message": "not found", "field": None, "help": None}]})

    def _reply(
        self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)
        except OSError:  # the client went away (e.g. killed mid-request)
            pass


class FakeSendGrid:
    def __init__(
        self, *, api_key: str = API_KEY, delay: float = 0.0, record: bool = True, tally: bool = False
    ) -> None:
        self.api_key = api_key
        # address -> accepted requests carrying it, without keeping the bodies (big benches)
        self.tally: Counter[str] | None = Counter() if tally else None
        self.delay = delay
        self.record = record
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self.requests: list[dict[str, Any]] = []  # accepted bodies' personalizations (+ meta)
        self.bodies: list[dict[str, Any]] = []  # accepted bodies without personalizations
        self.received = 0  # every POST, accepted or not
        self.arrivals: list[float] = []  # time.monotonic() of every POST
        self.in_progress = 0  # POSTs being answered right now
        self.most_in_progress = 0  # the most answered at once (requests in flight)
        self.accepted_recipients = 0
        self.statuses: list[int] = []
        self._sticky = False
        self._accepted = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # faults after acceptance: the request is taken (recorded), then answered badly
        self._after_accept: list[int] = []
        self.trickle: float = 0.0  # > 0: accepted answers are written one byte per this many seconds
        self.trickle_for: float = 5.0  # ...for at most this long, then the rest at once
        self.refused: dict[str, str] = {}  # address -> message: refused with a 400 naming its position

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeSendGrid:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- programming it -------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        message: str = "simulated failure",
        field: str | None = None,
        reset_in: float | None = None,
        delay: float = 0.0,
        retry_after: float | None = None,
    ) -> None:
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if reset_in is not None:
            headers["X-RateLimit-Reset"] = str(int(time.time() + reset_in))
            headers["X-RateLimit-Limit"] = "600"
            headers["X-RateLimit-Remaining"] = "0"
        body = {"errors": [{"message": message, "field": field, "help": None}]}
        with self._lock:
            self._failures.append(Failure(status, body, headers, delay))

    def fail_always(
        self, status: int, *, message: str = "simulated failure", field: str | None = None
    ) -> None:
        """Answer every request with this failure until ``clear_failures``."""
        with self._lock:
            self._failures = [
                Failure(status, {"errors": [{"message": message, "field": field, "help": None}]})
            ]
            self._sticky = True

    def accept_then(self, status: int) -> None:
        """The next valid request is taken (SendGrid mails it), then answered ``status`` (502, 504)."""
        with self._lock:
            self._after_accept.append(status)

    def refuse_address(self, address: str, message: str = "Does not contain a valid address.") -> None:
        """Requests carrying ``address`` get SendGrid's 400 naming its position, nothing is mailed."""
        with self._lock:
            self.refused[address] = message

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._sticky = False

    # --- assertions -----------------------------------------------------------------------

    def personalizations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p for request in self.requests for p in request["personalizations"]]

    def addresses(self) -> list[str]:
        return [p["to"][0]["email"] for p in self.personalizations()]

    def address_counts(self) -> Counter[str]:
        return Counter(self.addresses())

    @property
    def accepted_requests(self) -> int:
        with self._lock:
            return len(self.requests) if self.record else self._accepted

    # --- the endpoint ---------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        with self._lock:
            self.received += 1
            self.arrivals.append(time.monotonic())
            self.in_progress += 1
            self.most_in_progress = max(self.most_in_progress, self.in_progress)
        try:
            self._handle_one(handler)
        finally:
            with self._lock:
                self.in_progress -= 1

    def _handle_one(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            handler.close_connection = True
            self._answer(handler, 413, _errors("request entity too large", None))
            return
        raw = handler.rfile.read(length) if length else b""
        if handler.path.split("?")[0] != "/v3/mail/send":
            self._answer(handler, 404, _errors("not found", None))
            return
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._answer(
                handler,
                401,
                _errors("The provided authorization grant is invalid, expired, or revoked", None),
            )
            return
        with self._lock:
            failure = self._failures[0] if self._failures else None
            if failure is not None and not self._sticky:
                self._failures.pop(0)
        if failure is not None:
            if failure.delay:
                time.sleep(failure.delay)
            self._answer(handler, failure.status, failure.body, failure.headers)
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._answer(handler, 400, _errors("Bad Request", None))
            return
        problem = validate(body)
        if problem is not None:
            self._answer(handler, 400, _errors(*problem))
            return
        refusals = self._refusals(body)
        if refusals:
            self._answer(handler, 400, {"errors": refusals})
            return
        message_id = uuid.uuid4().hex[:22]
        # Accepted: SendGrid would mail these now, whether or not the client reads the answer.
        with self._lock:
            self.accepted_recipients += len(body["personalizations"])
            self._accepted += 1
            if self.tally is not None:
                self.tally.update(to["email"] for p in body["personalizations"] for to in p["to"])
            if self.record:
                meta = {k: v for k, v in body.items() if k != "personalizations"}
                self.requests.append(
                    {
                        "personalizations": body["personalizations"],
                        "message_id": message_id,
                        "at": time.time(),
                    }
                )
                if not self.bodies or self.bodies[-1] != meta:
                    self.bodies.append(meta)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            after = self._after_accept.pop(0) if self._after_accept else None
        if after is not None:
            self._answer(handler, after, _errors("upstream gateway failure", None))
            return
        if self.trickle:
            self._trickle(handler, message_id)
            return
        self._answer(handler, 202, None, {"X-Message-Id": message_id})

    def _refusals(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            refused = dict(self.refused)
        return [
            {
                "message": refused[p["to"][0]["email"]],
                "field": f"personalizations.{i}.to.0.email",
                "help": None,
            }
            for i, p in enumerate(body["personalizations"])
            if p["to"][0]["email"] in refused
        ]

    def _trickle(self, handler: _Handler, message_id: str) -> None:
        """A 202 written a byte at a time, as a congested proxy would: the client must not wait it out."""
        with self._lock:
            self.statuses.append(202)
        answer = (
            f"HTTP/1.1 202 Accepted\r\nX-Message-Id: {message_id}\r\nX-Padding: {'x' * 400}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + self.trickle_for
        try:
            for index in range(len(answer)):
                if time.monotonic() > deadline:
                    handler.wfile.write(answer[index:])
                    break
                handler.wfile.write(answer[index : index + 1])
                handler.wfile.flush()
                time.sleep(self.trickle)
        except OSError:  # the client gave up (as it should)
            pass
        handler.close_connection = True

    def _answer(
        self,
        handler: _Handler,
        status: int,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            self.statuses.append(status)
        handler._reply(status, body, headers)


def _errors(message: str, field: str | None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def validate(body: Any) -> tuple[str, str | None] | None:
    """The first problem with a v3 mail/send body, as (message, field); None when it is fine."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", None
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return "The personalizations field is required and must have at least one personalization.", (
            "personalizations"
        )
    if len(personalizations) > 1000:
        return "The personalizations field must have at most 1000 items.", "personalizations"
    for index, item in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(item, dict):
            return "Each personalization must be an object.", where
        to = item.get("to")
        if (
            not isinstance(to, list)
            or not to
            or not all(isinstance(t, dict) and "@" in str(t.get("email", "")) for t in to)
        ):
            return "Does not contain a valid address.", f"{where}.to"
        for key in ("headers", "substitutions", "custom_args"):
            if key in item and not _is_str_map(item[key]):
                return f"The {key} values must be strings.", f"{where}.{key}"
        if len(json.dumps(item.get("custom_args", {}))) > 10000:
            return "custom_args must be less than 10000 bytes.", f"{where}.custom_args"
    sender = body.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        return "The from email does not contain a valid address.", "from.email"
    if not body.get("subject") and not all(p.get("subject") for p in personalizations):
        return "The subject is required.", "subject"
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return "The content field is required.", "content"
    types = [part.get("type") for part in content if isinstance(part, dict)]
    if (
        "text/plain" in types
        and "text/html" in types
        and types.index("text/plain") > types.index("text/html")
    ):
        return "If present, text/plain content must be first, followed by text/html.", "content"
    if any(not isinstance(part, dict) or not part.get("value") for part in content):
        return "The content value must be a string at least one character in length.", "content.0.value"
    categories = body.get("categories", [])
    if (
        not isinstance(categories, list)
        or len(categories) > 10
        or not all(isinstance(c, str) for c in categories)
    ):
        return "Too many categories or not strings.", "categories"
    return None
