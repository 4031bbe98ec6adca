"""aiosmtpd on 127.0.0.1 (a free port) recording every message, counting connections.

``drop_after=N``: the connection carrying the (N+1)-th MAIL FROM is cut once
(transport aborted before any reply), as a server restart or a network blip
would; the client must reconnect and deliver the message again.
``reply_codes``: {address: "450 ..." or "550 ..."} answers RCPT for that address
(a "450" is answered once, then the address is accepted).
``defer_always``: addresses answered "451 4.7.1 ..." at RCPT every time.
``drop_in_data``: {address}: the connection is cut after that message's body
arrived, before any reply (the client cannot know whether it was delivered);
the message is not recorded. Once per address.
``down``: use ``SmtpServer.down_url()`` for a port where nothing listens.

    with SmtpServer() as server:
        ... NEWSLETTER_SMTP_URL=server.url ...
        server.messages      # list of (envelope recipients, message bytes)
        server.connections   # how many connections were opened
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        owner = self.server
        with owner._lock:
            owner.mail_commands += 1
            drop = (
                owner.drop_after is not None and not owner.dropped and owner.mail_commands > owner.drop_after
            )
            if drop:
                owner.dropped = True
        if drop and smtp.transport is not None:
            smtp.transport.abort()
            return "421 connection dropped"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        owner = self.server
        with owner._lock:
            code = owner.reply_codes.get(address)
            if code is not None and code.startswith("4"):
                del owner.reply_codes[address]  # temporary: answered once
        if code is not None:
            return code
        if address in owner.defer_always:
            with owner._lock:
                owner.deferrals[address] += 1
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        with self.server._lock:
            cut = [a for a in envelope.rcpt_tos if a in self.server.drop_in_data]
            self.server.drop_in_data -= set(cut)
            self.server.cut_in_data.extend(cut)
        if cut and smtp.transport is not None:
            smtp.transport.abort()
            return "421 connection dropped"
        with self.server._lock:
            self.server.messages.append((list(envelope.rcpt_tos), data))
        return "250 Message accepted for delivery"


class _CountingSMTP(SMTP):
    owner: SmtpServer

    def connection_made(self, transport: Any) -> None:
        with self.owner._lock:
            self.owner.connections += 1
        super().connection_made(transport)


class _Controller(Controller):
    owner: SmtpServer

    def factory(self) -> SMTP:
        smtp = _CountingSMTP(self.handler, **self.SMTP_kwargs)
        smtp.owner = self.owner
        return smtp


class SmtpServer:
    def __init__(
        self,
        *,
        drop_after: int | None = None,
        reply_codes: dict[str, str] | None = None,
        defer_always: set[str] | None = None,
        drop_in_data: set[str] | None = None,
    ) -> None:
        self.drop_after = drop_after
        self.defer_always = set(defer_always or ())
        self.deferrals: Counter[str] = Counter()
        self.drop_in_data = set(drop_in_data or ())
        self.cut_in_data: list[str] = []
        self.dropped = False
        self.reply_codes = dict(reply_codes or {})
        self.messages: list[tuple[list[str], bytes]] = []
        self.connections = 0
        self.mail_commands = 0
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller: _Controller | None = None

    def start(self) -> SmtpServer:
        controller = _Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10)
        controller.owner = self
        controller.start()
        self._controller = controller
        with self._lock:
            self.connections = 0  # the controller's own readiness probe
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @staticmethod
    def down_url() -> str:
        """An SMTP URL where nothing listens (the server is down: connections are refused)."""
        return f"smtp://127.0.0.1:{free_port()}"

    def recipients(self) -> Counter[str]:
        with self._lock:
            return Counter(address for rcpts, _data in self.messages for address in rcpts)
