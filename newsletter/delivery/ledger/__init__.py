"""The delivery ledger: one row per (issue, subscriber), claimed in batches.

* ``claims``: pending rows written page by page, and claimed in batches;
* ``outcomes``: what each batch's request did, recorded;
* ``recovery``: leases, uncertain batches, taking over and requeueing;
* ``counts``: what is left, failed, deferred;
* ``rows``: the tables and what the others share.

States: ``pending`` -> ``in_flight`` (claimed, committed before the request)
-> ``sent`` | ``failed``; ``suppressed`` when the subscriber stopped being
mailable between the scan and the claim.

Concurrency: on PostgreSQL a batch is claimed with ``SELECT … FOR UPDATE SKIP
LOCKED`` inside one ``UPDATE``, so several ``send`` processes split the work.
On SQLite the claim transaction starts with a write (the batch row), which
takes the database's single write lock; the ``UPDATE … WHERE state='pending'``
that follows therefore never overlaps another process's claim.

All of it is SQLAlchemy Core on purpose: a send of a million rows moves them
in bulk statements, a few per batch, never one ORM object per recipient.
"""

from newsletter.delivery.ledger.claims import (
    Claim,
    ClaimedRecipient,
    claim_batch,
    materialize_page,
)
from newsletter.delivery.ledger.counts import (
    counts_by_state,
    deferred_count,
    event_counts,
    failed_addresses,
    next_deferred_wait,
    recipients_to_send,
    remaining,
    unfreeze_if_untouched,
)
from newsletter.delivery.ledger.outcomes import (
    Outcome,
    mark_in_flight_sent,
    note_uncertain,
    record_all_sent,
    record_outcome,
    release_batch,
)
from newsletter.delivery.ledger.recovery import (
    Requeued,
    UncertainBatch,
    hold_here,
    in_flight_rows,
    release_here,
    renew_leases,
    requeue_uncertain,
    settle_rows,
    take_over,
    uncertain_batches,
)
from newsletter.delivery.ledger.rows import (
    MAILABLE_STATUS,
    STATES,
    worker_name,
)

__all__ = [
    "MAILABLE_STATUS",
    "STATES",
    "Claim",
    "ClaimedRecipient",
    "Outcome",
    "Requeued",
    "UncertainBatch",
    "claim_batch",
    "counts_by_state",
    "deferred_count",
    "event_counts",
    "failed_addresses",
    "hold_here",
    "in_flight_rows",
    "mark_in_flight_sent",
    "materialize_page",
    "next_deferred_wait",
    "note_uncertain",
    "recipients_to_send",
    "record_all_sent",
    "record_outcome",
    "release_batch",
    "release_here",
    "remaining",
    "renew_leases",
    "requeue_uncertain",
    "settle_rows",
    "take_over",
    "uncertain_batches",
    "unfreeze_if_untouched",
    "worker_name",
]
