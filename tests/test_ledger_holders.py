"""Who holds an in-flight batch: a live sender of this process, a live lease elsewhere, or nobody."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.delivery import ledger
from newsletter.tables import utcnow
from tests.support.delivery_fixtures import ISSUE_ID, add_subscribers, make_issue


def _claimed(settings: Settings, engine: Engine, worker: str) -> ledger.Claim:
    make_issue(settings, engine)
    add_subscribers(engine, 5)
    ledger.materialize_page(engine, ISSUE_ID, 0, 100)
    claim = ledger.claim_batch(engine, ISSUE_ID, 3, worker=worker, provider="sendgrid", lease_seconds=600)
    assert claim is not None
    return claim


def _batch(engine: Engine, batch_id: str) -> ledger.UncertainBatch:
    (batch,) = [b for b in ledger.uncertain_batches(engine, ISSUE_ID) if b.batch_id == batch_id]
    return batch


def test_a_batch_of_this_process_is_held_only_while_a_sender_holds_it(
    settings: Settings, engine: Engine
) -> None:
    """A send of this process that ended (its record failed, say) holds nothing any more,
    even with 10 minutes left on the lease: a resume in the same process (the admin's
    background sends, the scheduler) takes its batches over at once instead of waiting."""
    claim = _claimed(settings, engine, ledger.worker_name())
    batch = _batch(engine, claim.batch_id)
    assert batch.lease_until is not None and batch.lease_until > utcnow() + timedelta(minutes=9)
    assert not batch.held_by_someone()

    ledger.hold_here(claim.batch_id)
    try:
        assert _batch(engine, claim.batch_id).held_by_someone()
        assert not ledger.take_over(engine, _batch(engine, claim.batch_id), "resumer:1", 60)
    finally:
        ledger.release_here(claim.batch_id)
    assert ledger.take_over(engine, _batch(engine, claim.batch_id), "resumer:1", 60)


def test_a_batch_of_another_host_is_held_until_its_lease_runs_out(settings: Settings, engine: Engine) -> None:
    claim = _claimed(settings, engine, "mailer-2:4242")
    assert _batch(engine, claim.batch_id).held_by_someone()
    assert not ledger.take_over(engine, _batch(engine, claim.batch_id), "resumer:1", 60)
