"""An issue is in the public archive only once at least one recipient was accepted.

A send that crashed before anyone was mailed leaves the issue "sending": it must
not be listed, linked from the feed, or shown, until a recipient is actually sent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, update

from newsletter.config import Settings
from newsletter.issues import mark_sending
from newsletter.tables import DeliveryRow
from newsletter.web import create_app
from tests.support.delivery_fixtures import add_subscribers, make_issue, subscriber_ids
from tests.support.web import TestClient


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


def test_a_sending_issue_appears_only_once_someone_was_mailed(
    settings: Settings, engine: Engine, client: TestClient
) -> None:
    issue_id = make_issue(settings, engine, subject="Café — première")
    emails = add_subscribers(engine, 3)
    mark_sending(engine, issue_id)
    ids = subscriber_ids(engine)
    with engine.begin() as conn:
        conn.execute(
            DeliveryRow.__table__.insert(),
            [{"issue_id": issue_id, "subscriber_id": ids[e], "state": "in_flight"} for e in emails],
        )

    assert client.get(f"/issues/{issue_id}").status_code == 404
    assert issue_id not in client.get("/issues").text
    assert issue_id not in client.get("/feed.xml").text

    with engine.begin() as conn:
        conn.execute(
            update(DeliveryRow).where(DeliveryRow.subscriber_id == ids[emails[0]]).values(state="sent")
        )
    assert client.get(f"/issues/{issue_id}").status_code == 200
    assert issue_id in client.get("/issues").text  # the feed waits for "sent" (DESIGN: sent issues)
