"""The default provider: one .eml file per recipient in OUTBOX_DIR. Needs nothing."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from newsletter.delivery.message_types import Content, PushResult, Recipient
from newsletter.delivery.mime import MessageTemplate
from newsletter.errors import DeliveryError
from newsletter.files import write_atomic


class OutboxMessenger:
    name = "outbox"
    max_batch_size = 1000

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def push(self, content: Content, recipients: Sequence[Recipient]) -> PushResult:
        result = PushResult()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"outbox: cannot write to {self.directory}: {exc.strerror}") from exc
        template = MessageTemplate(content)
        for index, recipient in enumerate(recipients):
            try:
                mail = template.render(recipient)
                path = self.directory / _file_name(content, recipient, mail.message_id)
                # <name>.tmp until whole (fsync, rename): ``written`` tells the two apart after a crash
                write_atomic(path, mail.data, temp=path.with_suffix(".tmp"))
            except OSError as exc:
                # What was written is delivered: report it, so a resume does not write it
                # again; the rest certainly was not (no file), so it may be sent again.
                result.deferred.extend(r.email for r in recipients[index:])
                result.error = f"cannot write to {self.directory}: {exc.strerror}"
                break
            except Exception as exc:  # a render or header error: this one and the rest not written
                result.deferred.extend(r.email for r in recipients[index:])
                result.error = f"cannot build the message for {recipient.email}: {type(exc).__name__}: {exc}"
                break
            result.accepted.append(recipient.email)
            result.message_ids[recipient.email] = mail.message_id
        return result

    def written(self, issue_id: str, subscriber_ids: set[int]) -> set[int]:
        """Which of these subscribers have a finished .eml of ``issue_id`` here.

        For settling a batch a crash left in flight: the file name holds the issue and
        the subscriber id, and a file only gets its .eml name once fully written
        (write, fsync, rename). Half-written .tmp files of these subscribers are removed.
        """
        prefix = _safe(f"{issue_id}-")
        found: set[int] = set()
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return found
        for entry in entries:
            name = entry.name
            if not name.startswith(prefix):
                continue
            sid = name[len(prefix) :].split("-", 1)[0]
            if not sid.isdigit() or int(sid) not in subscriber_ids:
                continue
            if name.endswith(".eml"):
                found.add(int(sid))
            elif name.endswith(".tmp"):
                Path(entry.path).unlink(missing_ok=True)
        return found

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def _file_name(content: Content, recipient: Recipient, message_id: str) -> str:
    stem = f"{content.issue_id or 'mail'}-{recipient.subscriber_id or 0}-{recipient.email}"
    # The Message-ID's left part (time, pid, 64 random bits), not its end, which is mostly
    # the domain: two mails to one person (confirmation, welcome) must never share a name.
    unique = message_id.strip("<>").rpartition("@")[0] or message_id
    token = re.sub(r"[^A-Za-z0-9]+", "", unique)[-24:]
    return _safe(f"{stem}-{token}") + ".eml"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]+", "_", name)
