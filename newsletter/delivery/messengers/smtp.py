"""SMTP through smtplib: reused connections, several in parallel, careful retries.

``SMTP_URL``: ``smtp://user:pass@host:port`` (STARTTLS whenever the server
offers it; ``?starttls=required`` refuses servers that do not) or
``smtps://user:pass@host:465`` (TLS from the first byte). Each of
``SMTP_CONNECTIONS`` connections lives in its own worker thread and carries
many messages. A 421 reply or a dropped connection reconnects and tries the
message again; other 4xx replies are retried with backoff; 5xx replies are that
recipient's permanent failure. A connection lost after the message body was
handed over leaves that message *uncertain* (it may have been delivered).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
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

from newsletter.delivery.messengers.base import Content, PushResult, Recipient, wire_address
from newsletter.delivery.mime import MessageTemplate
from newsletter.errors import ConfigError

log = logging.getLogger(__name__)

_LEADING_DOT = re.compile(rb"(?m)^\.")


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
        """One transaction. Raises _Retry, _Uncertain or _Permanent."""
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
                raise _Retry(f"DATA answered {code}", reconnect=True)
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
            raise _Retry(message, reconnect=False)
        raise _Permanent(message)


class SmtpMessenger:
    name = "smtp"
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
        template = MessageTemplate(content)
        outcomes = list(self._executor.map(lambda r: self._deliver(template, sender, r), recipients))
        result = PushResult()
        for recipient, (kind, detail) in zip(recipients, outcomes, strict=True):
            if kind == "sent":
                result.accepted.append(recipient.email)
                result.message_ids[recipient.email] = detail
            elif kind == "failed":
                result.failed[recipient.email] = detail
            elif kind == "uncertain":
                result.uncertain.append(recipient.email)
            else:
                result.deferred.append(recipient.email)
                result.error = result.error or f"SMTP server unavailable: {detail}"
        return result

    def _deliver(self, template: MessageTemplate, sender: str, recipient: Recipient) -> tuple[str, str]:
        mail = template.render(recipient)
        message_id, data = mail.message_id, mail.data
        attempt = 0
        while True:
            connection = self._pool.get()
            try:
                connection.send(sender, wire_address(recipient.email), data)
                return "sent", message_id
            except _Permanent as exc:
                return "failed", str(exc)
            except _Uncertain as exc:
                log.warning("smtp: %s (%s)", exc, recipient.email)
                return "uncertain", str(exc)
            except _Retry as exc:
                if attempt >= self.max_retries:
                    return "deferred", str(exc)
                # a dropped connection is retried at once on a fresh one; 4xx waits
                wait = 0.0 if exc.reconnect and attempt == 0 else self._backoff(attempt)
                log.info("smtp: %s; retry %d in %.2fs", exc, attempt + 1, wait)
            finally:
                self._pool.put(connection)
            if wait:
                self.sleep(wait)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        return min(60.0, self.backoff * (2**attempt) * random.uniform(0.5, 1.5))

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
