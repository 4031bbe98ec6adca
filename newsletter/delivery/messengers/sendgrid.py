"""SendGrid v3 mail/send through the official ``sendgrid`` client.

One request carries up to 1,000 personalizations, one per recipient, each
with its own ``to``, ``headers`` (List-Unsubscribe…), ``substitutions`` (the
placeholders of the once-rendered issue) and ``custom_args`` (issue_id and
subscriber_id, so webhook events can be matched to the ledger).

Retries: 429 waits until ``X-RateLimit-Reset`` (bounded) and tries again; 5xx
and timeouts back off exponentially with jitter, ``max_retries`` times at most.
400/401/403/413 (and other 4xx) cannot be fixed by retrying: they raise
``ProviderRejectedError`` naming SendGrid's ``field`` and ``message``.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
import urllib.error
from collections.abc import Callable, Sequence
from email.utils import parseaddr
from typing import Any

import sendgrid
from python_http_client import exceptions as http_errors

from newsletter.delivery.messengers.base import Content, PushResult, Recipient, wire_address
from newsletter.errors import ProviderRejectedError, ProviderUnavailableError

log = logging.getLogger(__name__)

MAX_PERSONALIZATIONS = 1000
MAX_WAIT = 60.0


class SendGridMessenger:
    name = "sendgrid"
    max_batch_size = MAX_PERSONALIZATIONS

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
        self._static_key: tuple[int, Content] | None = None
        self._static: dict[str, Any] = {}

    # --- the request body -----------------------------------------------------------------

    def _static_part(self, content: Content) -> dict[str, Any]:
        """Everything but the personalizations, built once per Content."""
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
        body = self.build_body(content, recipients)
        message_id = self.post(body)
        return PushResult(accepted=[recipient.email for recipient in recipients], batch_message_id=message_id)

    def post(self, body: dict[str, Any]) -> str | None:
        """POST /v3/mail/send with retries; the X-Message-Id of the accepted request."""
        attempt = 0
        while True:
            self.requests += 1
            try:
                response = self.client.client.mail.send.post(request_body=body, timeout=self.timeout)
            except http_errors.HTTPError as exc:
                status = int(exc.status_code)
                message, field = _error_detail(exc.body)
                if status == 429:
                    wait = _rate_limit_wait(exc.headers, self._backoff(attempt))
                    problem = f"rate limited: {message}"
                elif status >= 500:
                    wait = self._backoff(attempt)
                    problem = message
                else:
                    raise ProviderRejectedError(
                        message, provider=self.name, status=status, field=field
                    ) from exc
                if attempt >= self.max_retries:
                    error = ProviderUnavailableError(
                        f"{problem} (gave up after {attempt + 1} attempts)", provider=self.name, status=status
                    )
                    raise error from exc
                log.warning("sendgrid %s, retrying in %.2fs: %s", status, wait, problem)
            except urllib.error.URLError as exc:
                # urllib wraps what fails while connecting or sending the request: the
                # request never arrived whole, so nobody was mailed and a retry is safe.
                problem = f"cannot connect: {exc.reason}"
                if attempt >= self.max_retries:
                    raise ProviderUnavailableError(
                        f"{problem} (gave up after {attempt + 1} attempts)", provider=self.name
                    ) from exc
                wait = self._backoff(attempt)
                log.warning("sendgrid %s, retrying in %.2fs", problem, wait)
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                # The request left and no answer came (a read timeout, a dropped
                # connection): SendGrid may have taken it and be mailing everyone now.
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

    def _backoff(self, attempt: int) -> float:
        return min(MAX_WAIT, self.backoff * (2**attempt) * random.uniform(0.5, 1.5))

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


def _rate_limit_wait(headers: Any, fallback: float) -> float:
    """Seconds until X-RateLimit-Reset (an epoch second), bounded; else the backoff."""
    value = headers.get("X-RateLimit-Reset") if headers is not None else None
    try:
        reset = float(value) if value is not None else None
    except ValueError:
        reset = None
    if reset is None:
        return fallback
    return max(0.0, min(MAX_WAIT, reset - time.time())) + random.uniform(0, 0.1)


def _to(recipient: Recipient) -> dict[str, str]:
    """SendGrid's ``to`` entry: the address in ASCII, and the subscriber's name when known."""
    entry = {"email": wire_address(recipient.email)}
    if recipient.name:
        entry["name"] = recipient.name
    return entry
