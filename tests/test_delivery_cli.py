"""`newsletter send` / `newsletter status` as real subprocesses: crashes, signals, concurrency."""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import Engine, select

from newsletter.config import Settings
from newsletter.db import open_database
from newsletter.tables import DeliveryBatchRow, DeliveryRow
from tests.support.delivery_fixtures import (
    add_subscribers,
    in_flight_emails,
    issue_status,
    ledger_states,
    make_issue,
    popen_cli,
    run_cli,
    use_sendgrid,
    wait_for,
)
from tests.support.fake_sendgrid import FakeSendGrid

pytestmark = pytest.mark.slow

LEASE = 2  # seconds: a killed sender's batch is free to take this long after its last renewal


@pytest.fixture
def sg_env(env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_sendgrid(monkeypatch, env, fake.url)


@pytest.fixture
def setup(sg_env: dict[str, str]) -> tuple[Settings, Engine]:
    from newsletter.config import get_settings

    settings = get_settings()
    return settings, open_database(settings.database_url)


def test_sigkill_mid_send_then_resume_then_resend_uncertain(
    setup: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 2000))
    fake.delay = 0.3  # each answer is slow, so the kill lands while a request is out
    sg_env["NEWSLETTER_LEASE_SECONDS"] = str(LEASE)

    process = popen_cli(sg_env, "send", issue, "--yes")
    try:
        # the first batches answered and recorded, the next ones out (up to 4 at once)
        wait_for(lambda: fake.received >= 6, 60, "the sixth request")
        time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    # at most SEND_CONCURRENCY (default 4) batches of 100 per process: one per request in flight
    states = ledger_states(engine, issue)
    assert 0 < states.get("in_flight", 0) <= settings.send_concurrency * 100
    uncertain = in_flight_emails(engine, issue)
    with engine.connect() as conn:
        batch_ids = set(
            conn.scalars(
                select(DeliveryRow.batch_id).where(
                    DeliveryRow.issue_id == issue, DeliveryRow.state == "in_flight"
                )
            )
        )
    assert settings.send_concurrency == 4 and 1 <= len(batch_ids) <= settings.send_concurrency

    fake.delay = 0.0
    resumed = run_cli(sg_env, "send", issue, "--yes")
    assert resumed.returncode == 1, resumed.stderr  # not fully sent: says so, exits non-zero
    assert "still in flight" in resumed.stderr
    assert f"incomplete: {len(uncertain)} in flight / 0 deferred" in resumed.stderr
    counts = fake.address_counts()
    assert max(counts.values()) == 1  # nobody twice
    assert set(counts) | uncertain == emails  # everybody else mailed
    assert in_flight_emails(engine, issue) == uncertain
    assert issue_status(engine, issue) == "sending"

    status = run_cli(sg_env, "status", issue)
    assert status.returncode == 0, status.stderr
    assert "in_flight" in status.stdout and "--resend-uncertain" in status.stdout
    assert all(str(batch_id) in status.stdout for batch_id in batch_ids)

    # The killed sender no longer renews its lease: once it expires, the batch is free to take.
    time.sleep(LEASE + 0.5)
    resent = run_cli(sg_env, "send", issue, "--yes", "--resend-uncertain")
    assert resent.returncode == 0, resent.stderr
    counts = fake.address_counts()
    assert set(counts) == emails
    twice = {email for email, count in counts.items() if count > 1}
    assert twice <= uncertain  # only what --resend-uncertain resent
    assert max(counts.values()) <= 2
    assert ledger_states(engine, issue) == {"sent": 2000}
    assert issue_status(engine, issue) == "sent"


def test_two_concurrent_send_processes_split_the_work(
    setup: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 3000))
    # 30 requests, 4 in flight per process (SEND_CONCURRENCY): >= 6 s, so the second process
    # is up well within it, even under load
    fake.delay = 0.8

    first = popen_cli(sg_env, "send", issue, "--yes")
    second = popen_cli(sg_env, "send", issue, "--yes")
    outputs = []
    for process in (first, second):
        try:
            outputs.append(process.communicate(timeout=120))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    assert first.returncode == 0, outputs[0][1]
    assert second.returncode == 0, outputs[1][1]

    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}
    assert ledger_states(engine, issue) == {"sent": 3000}
    assert issue_status(engine, issue) == "sent"
    with engine.connect() as conn:
        workers = set(conn.scalars(select(DeliveryBatchRow.worker).where(DeliveryBatchRow.issue_id == issue)))
    assert len(workers) == 2  # both processes took batches


def test_sigterm_finishes_the_batch_and_exits_130(
    setup: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 1000))
    fake.delay = 0.2
    process = popen_cli(sg_env, "send", issue, "--yes")
    try:
        wait_for(lambda: fake.received >= 2, 60, "the second request")
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 130, err
    assert f"newsletter send {issue}" in err and "resume" in err
    states = ledger_states(engine, issue)
    assert states.get("in_flight", 0) == 0  # the current batch was finished and recorded
    assert 0 < states["sent"] < 1000

    fake.delay = 0.0
    resumed = run_cli(sg_env, "send", issue, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}


def test_resend_uncertain_from_another_host_never_takes_a_live_batch(
    setup: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    """Host A's request is held for 4 s, four times its 1 s lease: A keeps renewing it, so
    host B's `--resend-uncertain` leaves that batch alone (and says why)."""
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 20))
    fake.delay = 4.0
    common = {**sg_env, "NEWSLETTER_BATCH_SIZE": "10", "NEWSLETTER_LEASE_SECONDS": "1"}
    host_a = popen_cli({**common, "NEWSLETTER_WORKER_NAME": "mailer-a.example:101"}, "send", issue, "--yes")
    try:
        wait_for(lambda: fake.received >= 1, 60, "host A's first request")
        time.sleep(1.5)  # past the lease A's claim started with: only its renewals keep it
        host_b = run_cli(
            {**common, "NEWSLETTER_WORKER_NAME": "mailer-b.example:202"},
            "send",
            issue,
            "--yes",
            "--resend-uncertain",
        )
        _out, err_a = host_a.communicate(timeout=60)
    finally:
        if host_a.poll() is None:
            host_a.kill()
            host_a.wait(timeout=10)
    assert host_b.returncode == 0, host_b.stderr
    assert "not resent: batch" in host_b.stderr and "live send by mailer-a.example:101" in host_b.stderr
    assert host_a.returncode == 0, err_a
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}  # nobody twice
    assert ledger_states(engine, issue) == {"sent": 20}
    with engine.connect() as conn:  # A's batch stayed A's: sent by A, never taken over
        first = conn.execute(
            select(DeliveryBatchRow.worker, DeliveryBatchRow.state)
            .where(DeliveryBatchRow.issue_id == issue)
            .order_by(DeliveryBatchRow.created_at)
        ).first()
    assert tuple(first or ()) == ("mailer-a.example:101", "sent")


def test_sigterm_during_a_429_wait_stops_within_two_seconds(
    setup: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 30))
    fake.fail_next(429, message="too many requests", retry_after=50)
    process = popen_cli(sg_env, "send", issue, "--yes")
    try:
        wait_for(lambda: fake.received >= 1, 60, "the rate-limited request")
        time.sleep(0.3)  # inside the 50 s wait
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 130, err
    assert took < 2.0, took
    assert ledger_states(engine, issue) == {"pending": 30}  # nothing handed over, nothing uncertain
    resumed = run_cli(sg_env, "send", issue, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}


@pytest.mark.usefixtures("sg_env")
def test_send_refuses_without_a_terminal_or_yes(
    setup: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    add_subscribers(engine, 5)
    result = run_cli(sg_env, "send", issue)
    assert result.returncode == 1
    assert "--yes" in result.stderr and "Traceback" not in result.stderr
    assert fake.received == 0

    dry = run_cli(sg_env, "send", issue, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "5 recipients" in dry.stdout and "1 batches" in dry.stdout
    assert fake.received == 0

    test = run_cli(sg_env, "send", issue, "--test-to", "editor@example.com,boss@example.org")
    assert test.returncode == 0, test.stderr
    assert sorted(fake.addresses()) == ["boss@example.org", "editor@example.com"]
    assert fake.bodies[-1]["subject"].startswith("[TEST] ")
    assert ledger_states(engine, issue) == {}

    missing = run_cli(sg_env, "send", "1999-W01", "--yes")
    assert missing.returncode == 1 and "1999-W01" in missing.stderr and "Traceback" not in missing.stderr

    sent = run_cli(sg_env, "send", issue, "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "5 sent" in sent.stdout
    status = run_cli(sg_env, "status", issue)
    assert "sent" in status.stdout and "5" in status.stdout


def test_cli_reports_a_refusal_and_how_to_go_on(
    setup: tuple[Settings, Engine], sg_env: dict[str, str], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    add_subscribers(engine, 5)
    fake.fail_always(400, message="The content value must be a string", field="content.0.value")
    result = run_cli(sg_env, "send", issue, "--yes")
    assert result.returncode == 1
    assert "content.0.value" in result.stderr and "The content value must be a string" in result.stderr
    assert "Traceback" not in result.stderr
    assert f"newsletter send {issue}" in result.stderr
