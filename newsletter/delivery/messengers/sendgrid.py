"""SendGrid v3 mail/send through the official ``sendgrid`` client.

One request carries up to 1,000 personalizations, one per recipient, each
with its own ``to``, ``headers`` (List-Unsubscribe…), ``substitutions`` (the
placeholders of the once-rendered issue) and ``custom_args`` (issue_id and
subscriber_id, so webhook events can be matched to the ledger).

Status policy (README, "Delivery status policy"): what each answer proves.

- Proof the request was *not* processed, so it may be retried or released:
  a refused or failed connection (the request never left whole), 429 and 503
  (retried after ``Retry-After`` or ``X-RateLimit-Reset``, else backoff, at most
  ``max_retries`` times), 400/401/403/413 and other 4xx (``ProviderRejectedError``
  naming SendGrid's ``field``; nothing is retried). A 400 whose errors all name
  addresses (``personalizations.N.to.0.email``) refuses those recipients only:
  they are reported ``refused`` with SendGrid's message, and the rest of the batch
  is posted again at once.
- *Unknown* (the request left and may have been taken): a timeout or a dropped
  connection after the request was sent, 500, 502, 504 and any other 5xx. Never
  retried: the batch is left uncertain for a webhook or ``--resend-uncertain``.

``SENDGRID_TIMEOUT`` is a deadline for the whole request (connect, send, the full
answer), not per socket read: an answer trickled byte by byte is cut at the deadline.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import logging
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

import sendgrid
from python_http_client import exceptions as http_errors

from newsletter.backoff import MAX_DELAY, backoff_delay
from newsletter.delivery.message_types import Content, PushResult, Recipient, wire_address
from newsletter.errors import ProviderRejectedError, ProviderUnavailableError

log = logging.getLogger(__name__)

MAX_PERSONALIZATIONS = 1000
MAX_WAIT = MAX_DELAY  # the longest wait taken between attempts, or honoured when SendGrid asks
# Statuses that prove SendGrid did not process the request (it may be sent again).
RETRY_STATUSES = (429, 503)
# A 400 naming one recipient's address: that recipient's failure, not the batch's.
ADDRESS_FIELD = re.compile(r"^personalizations\.(\d+)\.to(?:\.\d+(?:\.email)?)?$")


class _AddressesRefused(Exception):
    """A 400 whose every error names a recipient's address: position -> SendGrid's message."""

    def __init__(self, refused: dict[int, str]) -> None:
        super().__init__(f"{len(refused)} addresses refused")
        self.refused = refused


class SendGridMessenger:
    """Thread-safe: the sender pushes up to ``SEND_CONCURRENCY`` batches at once through one."""

    name = "sendgrid"
    max_batch_size = MAX_PERSONALIZATIONS
    concurrent = True

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = sendgrid.SendGridAPIClient(api_key=api_key, host=host)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep
        self.requests = 0
        self._lock = threading.Lock()
        # a 429/503 pauses every lane, not only the one that got it (monotonic time)
        self._paused_until = 0.0
        self._static_key: tuple[int, Content] | None = None
        self._static: dict[str, Any] = {}

    # --- the request body -----------------------------------------------------------------

    def _static_part(self, content: Content) -> dict[str, Any]:
        """Everything but the personalizations, built once per Content."""
        with self._lock:
            if self._static_key is not None and self._static_key[1] is content:
                return self._static
        name, address = parseaddr(content.from_email)
        sender: dict[str, str] = {"email": address or content.from_email}
        if name:
            sender["name"] = name
        body: dict[str, Any] = {
            "from": sender,
            "subject": content.subject,
            # text/plain must come before text/html
            "content": [
                {"type": "text/plain", "value": content.text},
                {"type": "text/html", "value": content.html},
            ],
        }
        if content.reply_to:
            reply_name, reply_address = parseaddr(content.reply_to)
            reply: dict[str, str] = {"email": reply_address or content.reply_to}
            if reply_name:
                reply["name"] = reply_name
            body["reply_to"] = reply
        if content.categories:
            body["categories"] = [str(category)[:255] for category in content.categories[:10]]
        with self._lock:
            self._static_key = (id(content), content)
            self._static = body
        return body

    def build_body(self, content: Content, recipients: Sequence[Recipient]) -> dict[str, Any]:
        if not recipients:
            raise ValueError("a push needs at least one recipient")
        if len(recipients) > MAX_PERSONALIZATIONS:
            raise ValueError(f"SendGrid takes at most {MAX_PERSONALIZATIONS} personalizations per request")
        issue_id = content.issue_id or ""
        personalizations: list[dict[str, Any]] = []
        append = personalizations.append
        for recipient in recipients:
            item: dict[str, Any] = {
                "to": [_to(recipient)],
                "custom_args": {"issue_id": issue_id, "subscriber_id": str(recipient.subscriber_id or "")},
            }
            headers = recipient.headers
            if headers:
                item["headers"] = headers if type(headers) is dict else dict(headers)
            substitutions = recipient.substitutions
            if substitutions:
                item["substitutions"] = substitutions if type(substitutions) is dict else dict(substitutions)
            append(item)
        body = dict(self._static_part(content))
        body["personalizations"] = personalizations
        return body

    # --- sending --------------------------------------------------------------------------

    def push(self, content: Content, recipients: Sequence[Recipient]) -> PushResult:
        remaining = list(recipients)
        refused: dict[str, str] = {}
        # Each round drops the addresses SendGrid refused (at least one): bounded by the batch.
        while remaining:
            body = self.build_body(content, remaining)
            try:
                message_id = self.post(body)
            except _AddressesRefused as exc:
                for index, message in exc.refused.items():
                    refused[remaining[index].email] = f"refused by SendGrid: {message}"
                remaining = [r for index, r in enumerate(remaining) if index not in exc.refused]
                continue
            return PushResult(
                accepted=[recipient.email for recipient in remaining],
                batch_message_id=message_id,
                refused=refused,
            )
        return PushResult(refused=refused)

    def post(self, body: dict[str, Any]) -> str | None:
        """POST /v3/mail/send with retries; the X-Message-Id of the accepted request."""
        attempt = 0
        own_until = 0.0  # the end of this request's own wait, already slept
        while True:
            self._wait_for_pause(own_until)
            with self._lock:
                self.requests += 1
            try:
                response = self._send_once(body)
            except http_errors.HTTPError as exc:
                status = int(exc.status_code)
                message, field = _error_detail(exc.body)
                if status == 400:
                    refused = _refused_addresses(exc.body, len(body["personalizations"]))
                    if refused:
                        raise _AddressesRefused(refused) from exc
                if status not in RETRY_STATUSES:
                    error = _refusal_or_unknown(status, message, field, self.name)
                    raise error from exc
                wait = _retry_after(exc.headers)
                problem = f"rate limited: {message}" if status == 429 else message
                if wait is not None and wait > MAX_WAIT:
                    raise ProviderUnavailableError(
                        f"{problem}; SendGrid asks to wait {wait:.0f}s: send again later",
                        provider=self.name,
                        status=status,
                    ) from exc
                if attempt >= self.max_retries:
                    error = ProviderUnavailableError(
                        f"{problem} (gave up after {attempt + 1} attempts)", provider=self.name, status=status
                    )
                    raise error from exc
                wait = backoff_delay(attempt, self.backoff, MAX_WAIT, retry_after=wait)
                # SendGrid's limit is per account: the other lanes hold back until then too
                own_until = self._pause(wait)
                log.warning("sendgrid %s, retrying in %.2fs: %s", status, wait, problem)
            except urllib.error.URLError as exc:
                # urllib wraps what fails while connecting or sending the request: the
                # request never arrived whole, so nobody was mailed and a retry is safe.
                problem = f"cannot connect: {exc.reason}"
                if attempt >= self.max_retries:
                    raise ProviderUnavailableError(
                        f"{problem} (gave up after {attempt + 1} attempts)", provider=self.name
                    ) from exc
                wait = backoff_delay(attempt, self.backoff, MAX_WAIT)
                log.warning("sendgrid %s, retrying in %.2fs", problem, wait)
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                # The request left and no answer came (the deadline passed, the connection
                # dropped): SendGrid may have taken it and be mailing everyone now.
                # Never retried: a double mail is worse than a late one. The batch stays
                # in flight until a webhook or `send --resend-uncertain` settles it.
                error = ProviderUnavailableError(
                    f"no answer after the request was sent: {exc or type(exc).__name__}", provider=self.name
                )
                error.uncertain = True  # type: ignore[attr-defined]
                raise error from exc
            else:
                status = int(response.status_code)
                if status >= 300:  # 3xx: nothing the API sends; treat as a refusal
                    raise ProviderRejectedError(
                        f"unexpected status {status}", provider=self.name, status=status
                    )
                headers = response.headers
                return headers.get("X-Message-Id") if headers is not None else None
            self.sleep(wait)
            attempt += 1

    def _pause(self, seconds: float) -> float:
        """Every lane waits ``seconds`` before its next request; returns the end of the pause."""
        until = time.monotonic() + seconds
        with self._lock:
            self._paused_until = max(self._paused_until, until)
        return until

    def _wait_for_pause(self, own_until: float) -> None:
        """Hold back while another lane's 429/503 pause lasts (this lane's own wait is slept already)."""
        with self._lock:
            until = self._paused_until
        wait = until - max(time.monotonic(), own_until)
        if wait > 0.001:
            self.sleep(wait)

    def _send_once(self, body: dict[str, Any]) -> Any:
        """One POST through the official client, its socket cut at the request's deadline."""
        endpoint = self.client.client.mail.send
        # The client's documented hook: every request of this endpoint goes through it.
        endpoint._make_request = functools.partial(_make_request, deadline=time.monotonic() + self.timeout)
        return endpoint.post(request_body=body, timeout=self.timeout)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def _error_detail(body: bytes | str | None) -> tuple[str, str | None]:
    """SendGrid's {"errors": [{"message", "field", "help"}]} as one message and the first field."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors:
        messages = []
        field = None
        for error in errors:
            if not isinstance(error, dict):
                continue
            messages.append(str(error.get("message") or "unknown error"))
            if field is None and error.get("field"):
                field = str(error["field"])
        if messages:
            return "; ".join(messages), field
    text = (body or "").strip()
    return (text[:300] or "no detail in the response"), None


def _refusal_or_unknown(status: int, message: str, field: str | None, provider: str) -> Exception:
    """4xx: refused (nothing processed). 5xx other than 503: the request's fate is unknown."""
    if status < 500:
        return ProviderRejectedError(message, provider=provider, status=status, field=field)
    error = ProviderUnavailableError(
        f"{message} (the request may have been taken: not retried)", provider=provider, status=status
    )
    error.uncertain = True  # type: ignore[attr-defined]
    return error


def _refused_addresses(body: bytes | str | None, count: int) -> dict[int, str]:
    """Positions -> messages when every error of a 400 names a recipient's address; else {}."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return {}
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors:
        return {}
    refused: dict[int, str] = {}
    for error in errors:
        match = ADDRESS_FIELD.match(str(error.get("field") or "")) if isinstance(error, dict) else None
        if match is None or int(match.group(1)) >= count:
            return {}  # something else is wrong too: the whole request is refused
        refused[int(match.group(1))] = str(error.get("message") or "invalid address")
    return refused


def _retry_after(headers: Any) -> float | None:
    """Seconds SendGrid asks to wait: Retry-After (seconds or a date), else X-RateLimit-Reset."""
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    try:
        return max(0.0, float(reset) - time.time()) + random.uniform(0, 0.1) if reset else None
    except ValueError:
        return None


# --- a deadline for the whole request -------------------------------------------------------


class _Watch:
    """Cuts the sockets of one request when its deadline passes (a trickled answer included)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._timers: list[threading.Timer] = []
        self.fired = False

    def arm(self, sock: socket.socket) -> None:
        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._cut, (sock,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _cut(self, sock: socket.socket) -> None:
        self.fired = True
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns at once

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, watch: _Watch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        super().connect()
        self._watch.arm(self.sock)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, watch: _Watch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        super().connect()
        self._watch.arm(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watch) -> None:
        super().__init__()
        self._watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, watch=self._watch), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watch) -> None:
        super().__init__()
        self._watch = watch

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPSConnection, watch=self._watch), req)


class _Answer:
    """A fully read response, as python_http_client's Response reads it."""

    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self._status, self._body, self._headers = status, body, headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> Any:
        return self._headers


def _make_request(
    _opener: Any, request: urllib.request.Request, timeout: float | None = None, *, deadline: float
) -> _Answer:
    """python_http_client's ``_make_request``, with the whole exchange under ``deadline``."""
    watch = _Watch(deadline)
    opener = urllib.request.build_opener(_HTTPHandler(watch), _HTTPSHandler(watch))
    remaining = max(0.001, deadline - time.monotonic())
    try:
        try:
            response = opener.open(request, timeout=min(timeout or remaining, remaining))
            answer = _Answer(response.getcode(), response.read(), response.info())
            if watch.fired:  # cut mid-answer: what was read may look whole (EOF ends headers)
                raise TimeoutError(f"no complete answer within {timeout}s (SENDGRID_TIMEOUT)")
        except urllib.error.HTTPError as err:
            error = http_errors.handle_error(err)  # reads the error body, still under the deadline
            error.__cause__ = None
            raise error from None
    except (OSError, http.client.HTTPException) as exc:
        if watch.fired and not isinstance(exc, urllib.error.URLError):
            raise TimeoutError(f"no complete answer within {timeout}s (SENDGRID_TIMEOUT)") from exc
        raise
    finally:
        watch.cancel()
    return answer


def _to(recipient: Recipient) -> dict[str, str]:
    """SendGrid's ``to`` entry: the address in ASCII, and the subscriber's name when known."""
    entry = {"email": wire_address(recipient.email)}
    if recipient.name:
        entry["name"] = recipient.name
    return entry
