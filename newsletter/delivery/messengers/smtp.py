"""SMTP through smtplib: reused connections, several in parallel, careful retries.

``SMTP_URL``: ``smtp://user:pass@host:port`` (STARTTLS whenever the server
offers it; ``?starttls=required`` refuses servers that do not) or
``smtps://user:pass@host:465`` (TLS from the first byte). Each of
``SMTP_CONNECTIONS`` connections lives in its own worker thread and carries
many messages.

What each answer means (README, "Delivery status policy"):

- a refused or failed connection, a 421, a connection dropped before the body was
  sent: the *connection* is retried (at once, then with backoff), for the whole
  batch rather than per recipient; when it stays down for the retry schedule (at
  most ``CONNECT_BUDGET`` seconds) the rest of the batch is handed back unsent
  (pending) and the send stops with one line;
- another 4xx for a recipient: that recipient is *deferred* (``temporary``) with
  the server's reply; the sender gives it a not-before time and goes on with
  everyone else;
- 5xx: that recipient's permanent failure;
- a connection lost after the body was handed over: that one message is
  *uncertain* (it may have been delivered).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.backoff import backoff_delay
from newsletter.delivery.message_types import Content, PushResult, Recipient, WaitInterrupted, wire_address
from newsletter.delivery.mime import MessageTemplate
from newsletter.errors import ConfigError

log = logging.getLogger(__name__)

_LEADING_DOT = re.compile(rb"(?m)^\.")
# the longest a batch keeps retrying an unreachable server before handing everyone back
CONNECT_BUDGET = 60.0


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: str  # "auto" | "required" | "off"
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("NEWSLETTER_SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"NEWSLETTER_SMTP_URL has a bad port: {exc}") from exc
    options = {key.lower(): values[-1].lower() for key, values in parse_qs(parts.query).items()}
    starttls = options.get("starttls", "auto")
    if starttls not in ("auto", "required", "off"):
        raise ConfigError("NEWSLETTER_SMTP_URL: starttls must be auto, required or off")
    implicit = scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit else 587 if parts.username else 25),
        implicit_tls=implicit,
        starttls="off" if implicit else starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class _Retry(Exception):
    """The message can be tried again (after reconnecting when ``reconnect``)."""

    def __init__(self, reason: str, *, reconnect: bool) -> None:
        super().__init__(reason)
        self.reconnect = reconnect


class _Uncertain(Exception):
    pass


class _Temporary(Exception):
    """The server deferred this recipient (4xx other than 421): try it later."""


class _Permanent(Exception):
    pass


class _Connection:
    """One SMTP session, opened lazily and reused for many messages."""

    def __init__(self, messenger: SmtpMessenger) -> None:
        self.messenger = messenger
        self.smtp: smtplib.SMTP | None = None

    def open(self) -> smtplib.SMTP:
        if self.smtp is not None:
            return self.smtp
        target = self.messenger.target
        timeout = self.messenger.timeout
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if target.implicit_tls:
            smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if not target.implicit_tls and target.starttls != "off":
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                elif target.starttls == "required":
                    raise ConfigError(f"SMTP server {target.host} does not offer STARTTLS")
            if target.username:
                smtp.login(target.username, target.password or "")
        except BaseException:
            _quietly_close(smtp)
            raise
        self.messenger._opened()
        self.smtp = smtp
        return smtp

    def drop(self) -> None:
        if self.smtp is not None:
            _quietly_close(self.smtp)
            self.smtp = None

    def quit(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.smtp.quit()
            _quietly_close(self.smtp)
            self.smtp = None

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        """One transaction. Raises _Retry, _Temporary, _Uncertain or _Permanent."""
        try:
            smtp = self.open()
        except smtplib.SMTPAuthenticationError as exc:
            raise _Permanent(f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.drop()
            raise _Retry(f"cannot connect: {exc}", reconnect=True) from exc
        stage = "MAIL"
        try:
            code, reply = smtp.mail(sender)
            self._check(smtp, code, reply, "MAIL FROM")
            stage = "RCPT"
            code, reply = smtp.rcpt(recipient)
            self._check(smtp, code, reply, "RCPT TO")
            stage = "DATA"
            code, reply = smtp.docmd("data")
            if code != 354:
                self._check(smtp, code, reply, "DATA")
                raise _Temporary(f"DATA answered {code} {_text(reply)}")
            stage = "BODY"
            payload = _LEADING_DOT.sub(b"..", data)
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            smtp.send(payload + b".\r\n")
            code, reply = smtp.getreply()
            stage = "END"
            self._check(smtp, code, reply, "message")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.drop()
            if stage in ("BODY",):
                raise _Uncertain(f"connection lost after the message was sent: {exc}") from exc
            raise _Retry(f"connection lost at {stage}: {exc}", reconnect=True) from exc
        except smtplib.SMTPResponseException as exc:
            self.drop()
            raise _Retry(f"{exc.smtp_code} {_text(exc.smtp_error)}", reconnect=True) from exc

    def _check(self, smtp: smtplib.SMTP, code: int, reply: bytes, what: str) -> None:
        if 200 <= code < 300:
            return
        message = f"{what}: {code} {_text(reply)}"
        if code == 421 or code == -1:
            self.drop()
            raise _Retry(message, reconnect=True)
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.drop()
        if 400 <= code < 500:
            raise _Temporary(message)
        raise _Permanent(message)


@dataclass
class _PushState:
    """One push's shared verdicts (several pushes may run at once, one per sender lane)."""

    # set when the server stayed unreachable: the rest of the batch is not tried
    down: str | None = None
    interrupted: bool = False


class SmtpMessenger:
    name = "smtp"
    # the sender may push several batches at once: their messages share the connections
    concurrent = True
    # small batches: a crash leaves at most this many messages uncertain
    max_batch_size = 100

    def __init__(
        self,
        url: str,
        *,
        connections: int = 1,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = parse_smtp_url(url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep
        self.connections_opened = 0
        self._lock = threading.Lock()
        self._pool: queue.Queue[_Connection] = queue.Queue()
        self._all = [_Connection(self) for _ in range(max(1, connections))]
        for connection in self._all:
            self._pool.put(connection)
        self._executor = ThreadPoolExecutor(max_workers=len(self._all), thread_name_prefix="smtp")
        self.max_batch_size = max(self.max_batch_size, 25 * len(self._all))

    def _opened(self) -> None:
        with self._lock:
            self.connections_opened += 1

    def push(self, content: Content, recipients: Sequence[Recipient]) -> PushResult:
        sender = parseaddr(content.from_email)[1] or content.from_email
        push = _PushState()
        try:
            template = MessageTemplate(content)
        except Exception as exc:  # nothing was handed over: the whole batch is unsent
            return PushResult(
                deferred=[r.email for r in recipients],
                error=f"cannot build the message: {type(exc).__name__}: {exc}",
            )
        outcomes = list(self._executor.map(lambda r: self._deliver(template, sender, r, push), recipients))
        result = PushResult()
        for recipient, (kind, detail) in zip(recipients, outcomes, strict=True):
            if kind == "sent":
                result.accepted.append(recipient.email)
                result.message_ids[recipient.email] = detail
            elif kind == "failed":
                result.failed[recipient.email] = detail
            elif kind == "uncertain":
                result.uncertain.append(recipient.email)
            elif kind == "temporary":
                result.temporary[recipient.email] = detail
            else:
                result.deferred.append(recipient.email)
                result.error = result.error or detail
        result.interrupted = push.interrupted
        return result

    def _deliver(
        self, template: MessageTemplate, sender: str, recipient: Recipient, push: _PushState
    ) -> tuple[str, str]:
        """One recipient: ("sent", message id) | ("failed"|"temporary"|"uncertain"|"unsent", why)."""
        if push.down is not None:
            return "unsent", push.down
        try:
            mail = template.render(recipient)
        except Exception as exc:  # this one cannot be built: not handed over, the send stops
            return "unsent", f"cannot build the message for {recipient.email}: {type(exc).__name__}: {exc}"
        message_id, data = mail.message_id, mail.data
        attempt = 0
        trouble_since: float | None = None
        while True:
            if push.down is not None:  # another connection gave up on the server meanwhile
                return "unsent", push.down
            connection = self._pool.get()
            try:
                connection.send(sender, wire_address(recipient.email), data)
                return "sent", message_id
            except _Permanent as exc:
                return "failed", str(exc)
            except _Temporary as exc:
                return "temporary", str(exc)
            except _Uncertain as exc:
                log.warning("smtp: %s (%s)", exc, recipient.email)
                return "uncertain", str(exc)
            except _Retry as exc:
                # The connection, not this recipient: retried at once on a fresh one, then
                # with backoff, within the budget; then the server is down for the batch.
                now = time.monotonic()
                trouble_since = trouble_since if trouble_since is not None else now
                wait = 0.0 if attempt == 0 else backoff_delay(attempt, self.backoff)
                if attempt >= self.max_retries or now + wait - trouble_since > CONNECT_BUDGET:
                    with self._lock:
                        push.down = push.down or f"SMTP server unavailable: {exc}"
                    return "unsent", push.down
                log.info("smtp: %s; reconnecting in %.2fs", exc, wait)
            except Exception as exc:
                # Raised on our side before the message was handed over (smtplib refuses a
                # line break in an address, say): not sent; the connection starts afresh.
                connection.drop()
                return "unsent", f"cannot send to {recipient.email!r}: {type(exc).__name__}: {exc}"
            finally:
                self._pool.put(connection)
            if wait:
                try:
                    self.sleep(wait)
                except WaitInterrupted as exc:  # SIGTERM: this one and the rest stay unsent
                    with self._lock:
                        push.down = push.down or str(exc)
                        push.interrupted = True
                    return "unsent", push.down
            attempt += 1

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for connection in self._all:
            connection.quit()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _quietly_close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()
