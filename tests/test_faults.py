"""Fault injection on the send path: the database killed or locked mid-send, the provider timing
out, the outbox's disk full. Each must end in a clear error and a state that a second
``send`` finishes, with nobody mailed twice (except on purpose, ``--resend-uncertain``).

Real parts only: the SendGrid look-alike on 127.0.0.1 (tests/support/fake_sendgrid.py), the
real PostgreSQL (its backends killed with ``pg_terminate_backend``), a second SQLite
connection holding ``BEGIN EXCLUSIVE``, a 64 KiB tmpfs for the outbox. Every thread, process
and mount started here is stopped in the test's own ``finally``/teardown.
"""

from __future__ import annotations

import email
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from newsletter.config import Settings, get_settings
from newsletter.db import make_engine, open_database
from newsletter.delivery import SendProgress, delivery_status, send_issue
from newsletter.errors import DeliveryError, NewsletterError
from newsletter.tables import DeliveryRow, IssueRow, SubscriberRow
from tests.conftest import PG_HOST, PG_PORT
from tests.support.delivery_fixtures import (
    add_subscribers,
    make_issue,
    popen_cli,
    run_cli,
    use_sendgrid,
    wait_for,
)
from tests.support.fake_sendgrid import FakeSendGrid

BATCH = 100
SUBSCRIBERS = 350  # four batches: 100, 100, 100, 50


@pytest.fixture
def sg_env(env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_sendgrid(
        monkeypatch,
        env,
        fake.url,
        NEWSLETTER_SENDGRID_TIMEOUT="10",
        NEWSLETTER_MAX_RETRIES="2",
        NEWSLETTER_BATCH_SIZE=str(BATCH),
        # one request in flight: each fault here is aimed at one particular batch
        # (several in flight: test_delivery_concurrency.py)
        NEWSLETTER_SEND_CONCURRENCY="1",
    )


@pytest.fixture
def sg(sg_env: dict[str, str]) -> tuple[Settings, Engine]:
    settings = get_settings()
    return settings, open_database(settings.database_url)


def _issue_status(engine: Engine, issue_id: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(IssueRow.status).where(IssueRow.id == issue_id)).scalar_one())


def _emails_in_state(engine: Engine, issue_id: str, state: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.scalars(
                select(SubscriberRow.email)
                .join(DeliveryRow, DeliveryRow.subscriber_id == SubscriberRow.id)
                .where(DeliveryRow.issue_id == issue_id, DeliveryRow.state == state)
            )
        )


class Helper:
    """A thread running ``target`` that re-raises its exception on ``join`` (bounded)."""

    def __init__(self, target: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self._target = target
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # handed to the test in join()
            self.error = exc

    def start(self) -> Helper:
        self.thread.start()
        return self

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "helper thread did not finish"
        if self.error is not None:
            raise self.error


# =====================================================================================
# 1. PostgreSQL: the backend terminated mid-send
# =====================================================================================


def _pg_dsn(database_url: str) -> str:
    return f"host={PG_HOST} port={PG_PORT} user=postgres dbname={make_url(database_url).database}"


def _terminate_others(dsn: str, *spare: int) -> int:
    """pg_terminate_backend on every other connection to this database; how many there were."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s))",
            (list(spare),),
        ).fetchone()
    return int(row[0]) if row else 0


def _kill_the_writer_of_batch_two(dsn: str, fake: FakeSendGrid, killed: list[int]) -> None:
    """While the second request is out, lock the ledger; once the sender waits on that lock
    (recording what SendGrid took), terminate its backend, then let go."""
    wait_for(lambda: fake.received >= 2, 20, "the second request")
    with psycopg.connect(dsn, connect_timeout=5) as locker, psycopg.connect(dsn, autocommit=True) as watch:
        locker.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
        waiting: list[tuple[Any, ...]] = []

        def blocked() -> bool:
            waiting[:] = watch.execute(
                "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchall()
            return bool(waiting)

        wait_for(blocked, 20, "the sender to wait on the locked ledger")
        assert all("UPDATE deliveries" in query for _pid, query in waiting), waiting
        killed.append(_terminate_others(dsn, locker.info.backend_pid, watch.info.backend_pid))
        locker.rollback()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.postgres
def test_pg_backends_terminated_between_batches_the_send_reconnects_and_completes(
    sg: tuple[Settings, Engine], fake: FakeSendGrid, db_url: str
) -> None:
    settings, engine = sg
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, SUBSCRIBERS))
    killed: list[int] = []

    def on_progress(state: SendProgress) -> None:
        if state.batches == 1 and not killed:
            killed.append(_terminate_others(_pg_dsn(db_url)))

    report = send_issue(settings, engine, issue, progress=on_progress)

    assert killed and killed[0] >= 1  # the sender's pooled connection was among them
    # pool_pre_ping notices the dead connection at the next checkout and opens a new one
    assert report.sent == SUBSCRIBERS and report.issue_status == "sent"
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}
    assert delivery_status(engine, issue).counts["sent"] == SUBSCRIBERS


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.postgres
def test_pg_backend_terminated_while_recording_a_batch_leaves_it_uncertain_and_resumes(
    sg: tuple[Settings, Engine], fake: FakeSendGrid, db_url: str
) -> None:
    settings, engine = sg
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, SUBSCRIBERS))
    fake.delay = 0.4  # the second answer is slow: the lock is in place before it comes
    killed: list[int] = []
    helper = Helper(lambda: _kill_the_writer_of_batch_two(_pg_dsn(db_url), fake, killed)).start()
    try:
        with pytest.raises((NewsletterError, SQLAlchemyError)) as caught:
            send_issue(settings, engine, issue)
    finally:
        helper.join()
    fake.delay = 0.0
    # Translated at the boundary: a project error that says how to go on, the cause kept.
    assert isinstance(caught.value, DeliveryError), type(caught.value)
    assert isinstance(caught.value.__cause__, OperationalError)
    assert "again to resume" in str(caught.value) and "\n" not in str(caught.value)
    assert "terminating connection" in str(caught.value)
    assert killed and killed[0] >= 1  # the sender's connection, at least

    # SendGrid took batch 2, its outcome was never recorded: it stays in flight (uncertain)
    uncertain = _emails_in_state(engine, issue, "in_flight")
    second = {p["to"][0]["email"] for p in fake.requests[1]["personalizations"]}
    assert uncertain == second and len(uncertain) == BATCH
    assert delivery_status(engine, issue).counts["sent"] == BATCH

    resumed = send_issue(settings, engine, issue)
    assert resumed.sent == SUBSCRIBERS - 2 * BATCH
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}  # nobody twice, nobody missed
    assert _emails_in_state(engine, issue, "in_flight") == uncertain  # never resent on its own
    assert _issue_status(engine, issue) == "sending"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_cli_send_whose_backend_is_terminated_prints_one_line_and_no_traceback(
    sg: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid, db_url: str
) -> None:
    settings, engine = sg
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, SUBSCRIBERS))
    fake.delay = 0.4
    killed: list[int] = []
    helper = Helper(lambda: _kill_the_writer_of_batch_two(_pg_dsn(db_url), fake, killed)).start()
    process = popen_cli(sg_env, "send", issue, "--yes")
    try:
        _out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
        helper.join()
    fake.delay = 0.0
    # the state is resumable either way (checked before the verdict on the message)
    resumed = run_cli(sg_env, "send", issue, "--yes")
    # a batch left uncertain by the kill stays in flight: the resume says so and exits 1
    left = delivery_status(engine, issue).counts["in_flight"]
    assert resumed.returncode == (1 if left else 0), resumed.stderr
    assert (f"incomplete: {left} in flight" in resumed.stderr) == bool(left)
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}

    assert process.returncode == 1, err
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err


# =====================================================================================
# 2. SQLite: the database locked mid-send
# =====================================================================================

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _hold_write_lock(path: str, seconds: float, taken: threading.Event) -> None:
    """Another process's long write: BEGIN EXCLUSIVE on the same file, held ``seconds``."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


@sqlite_only
def test_sqlite_locked_within_the_busy_timeout_the_send_waits_and_completes(
    sg: tuple[Settings, Engine], fake: FakeSendGrid
) -> None:
    """newsletter/db.py waits up to 30 s for a lock (busy_timeout): a 1 s lock only slows the send."""
    settings, engine = sg
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, SUBSCRIBERS))
    path = str(make_url(settings.database_url).database)
    hold = 1.0
    taken = threading.Event()
    helpers: list[Helper] = []

    def on_progress(state: SendProgress) -> None:
        if state.batches == 1 and not helpers:
            helpers.append(Helper(lambda: _hold_write_lock(path, hold, taken)).start())
            assert taken.wait(10), "could not take the write lock"

    try:
        report = send_issue(settings, engine, issue, progress=on_progress)
    finally:
        for helper in helpers:
            helper.join()
    assert report.sent == SUBSCRIBERS and report.issue_status == "sent"
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}
    gap = fake.requests[1]["at"] - fake.requests[0]["at"]
    assert gap >= hold * 0.8, f"the second claim did not wait for the lock ({gap:.2f}s)"


@sqlite_only
def test_sqlite_locked_beyond_the_busy_timeout_fails_with_the_batch_uncertain_and_resumes(
    sg: tuple[Settings, Engine], fake: FakeSendGrid
) -> None:
    """The same with the wait shortened to 0.2 s (as if a lock outlived the 30 s): the record of
    a batch SendGrid already took fails, the batch stays in flight, the resume skips it."""
    settings, engine = sg
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, SUBSCRIBERS))
    path = str(make_url(settings.database_url).database)
    impatient = make_engine(settings.database_url)

    @event.listens_for(impatient, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:  # after the project's pragmas
        dbapi_connection.execute("PRAGMA busy_timeout=200")

    fake.delay = 0.3
    taken = threading.Event()

    def lock_during_second_request() -> None:
        wait_for(lambda: fake.received >= 2, 20, "the second request")
        _hold_write_lock(path, 2.0, taken)

    helper = Helper(lock_during_second_request).start()
    try:
        with pytest.raises((NewsletterError, SQLAlchemyError)) as caught:
            send_issue(settings, impatient, issue)
    finally:
        helper.join()
        impatient.dispose()
    fake.delay = 0.0
    assert taken.is_set()
    # Translated at the boundary: a project error naming the lock, the cause kept.
    assert isinstance(caught.value, DeliveryError) and "database is locked" in str(caught.value)
    assert isinstance(caught.value.__cause__, OperationalError)

    uncertain = _emails_in_state(engine, issue, "in_flight")
    second = {p["to"][0]["email"] for p in fake.requests[1]["personalizations"]}
    assert uncertain == second and len(uncertain) == BATCH

    resumed = send_issue(settings, engine, issue)
    assert resumed.sent == SUBSCRIBERS - 2 * BATCH
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}
    assert _emails_in_state(engine, issue, "in_flight") == uncertain


# =====================================================================================
# 3. The provider times out: the CLI path
# =====================================================================================


@pytest.mark.slow
def test_cli_send_against_a_provider_that_times_out(
    sg: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    """(send_issue itself is covered by test_delivery_sendgrid.py; this is what a user sees.)"""
    settings, engine = sg
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 250))
    fake.delay = 1.0  # SendGrid takes the request, then answers after the client gave up
    slow = {**sg_env, "NEWSLETTER_SENDGRID_TIMEOUT": "0.3"}

    first = run_cli(slow, "send", issue, "--yes", timeout=60)

    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, first.stderr
    assert "sendgrid" in errors[0] and "no answer after the request was sent" in errors[0]
    assert f"newsletter send {issue}" in first.stderr  # how to go on
    assert fake.accepted_recipients == BATCH  # the one request was taken: those are mailed
    counts = delivery_status(engine, issue).counts
    assert counts["in_flight"] == BATCH and counts["pending"] == 150 and counts["sent"] == 0

    fake.delay = 0.0
    second = run_cli(slow, "send", issue, "--yes", timeout=60)

    assert second.returncode == 1, second.stderr  # not fully sent: one batch is uncertain
    assert f"incomplete: {BATCH} in flight / 0 deferred" in second.stderr
    assert "Traceback" not in second.stderr and "--resend-uncertain" in second.stderr
    mailed = fake.address_counts()
    assert set(mailed) == emails and set(mailed.values()) == {1}  # the uncertain batch was not resent
    assert delivery_status(engine, issue).counts["in_flight"] == BATCH
    assert _issue_status(engine, issue) == "sending"


# =====================================================================================
# 4. The outbox's disk is full
# =====================================================================================


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root): room for about 16 messages, then ENOSPC."""
    where = tmp_path / "full-disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        done = subprocess.run(["umount", str(where)], capture_output=True, timeout=10)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


def _outbox_recipients(folder: Path) -> Counter[str]:
    """Recipient -> number of complete .eml files in ``folder``."""
    found: Counter[str] = Counter()
    for path in folder.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        parts = [part.get_content_type() for part in message.iter_parts()]
        assert parts == ["text/plain", "text/html"], (path.name, parts)  # whole, not cut short
        found[str(message["To"])] += 1
    return found


def _send_into_a_full_disk(
    settings: Settings, engine: Engine, full: Path, spare: Path
) -> tuple[DeliveryError, set[str], Counter[str], Counter[str]]:
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 60))
    cramped = settings.model_copy(update={"outbox_dir": full, "batch_size": 10})
    with pytest.raises(DeliveryError) as caught:
        send_issue(cramped, engine, issue)
    in_full = _outbox_recipients(full)
    assert not list(full.glob("*.tmp")), "a half-written temp file was left behind"
    counts = delivery_status(engine, issue).counts
    sent_rows = _emails_in_state(engine, issue, "sent")
    assert counts["in_flight"] == 0 and counts["sent"] + counts["pending"] == 60
    assert sent_rows <= set(in_full)  # nothing marked sent without its message on disk
    assert caught.value.report.sent == len(sent_rows) > 0  # type: ignore[attr-defined]

    # space freed (another outbox): the resume finishes the issue
    roomy = settings.model_copy(update={"outbox_dir": spare, "batch_size": 10})
    report = send_issue(roomy, engine, issue)
    assert report.issue_status == "sent" and report.sent == counts["pending"]
    return caught.value, emails, in_full, _outbox_recipients(spare)


def test_outbox_disk_full_is_a_clear_error_with_nothing_half_written(
    settings: Settings, engine: Engine, tiny_disk: Path, tmp_path: Path
) -> None:
    error, emails, in_full, in_spare = _send_into_a_full_disk(settings, engine, tiny_disk, tmp_path / "spare")
    assert str(error).startswith(f"outbox: cannot write to {tiny_disk}")
    assert "No space left on device" in str(error) and "\n" not in str(error)
    assert set(in_full) | set(in_spare) == emails  # everyone has the issue at least once
    assert 0 < sum(in_full.values()) < 60


def test_outbox_disk_full_then_resume_mails_everyone_exactly_once(
    settings: Settings, engine: Engine, tiny_disk: Path, tmp_path: Path
) -> None:
    _error, emails, in_full, in_spare = _send_into_a_full_disk(
        settings, engine, tiny_disk, tmp_path / "spare"
    )
    both = in_full + in_spare
    assert set(both) == emails
    twice = sorted(address for address, count in both.items() if count > 1)
    assert not twice, f"{len(twice)} recipients got two copies, e.g. {twice[:3]}"
