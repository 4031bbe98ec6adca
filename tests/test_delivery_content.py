"""The send's recipient builder gives what the general, one-by-one functions give."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.config import Settings
from newsletter.delivery.content import RecipientBuilder
from newsletter.issues.placeholders import substitutions
from newsletter.subscribers import UnsubscribeLinks


# the settings fixture is the same for every example (read-only here)
@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    subscriber_id=st.integers(min_value=1, max_value=10**12),
    email_hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    name=st.none() | st.text(max_size=40),
)
def test_builder_matches_the_one_by_one_functions(
    settings: Settings, subscriber_id: int, email_hash: str, name: str | None
) -> None:
    links = UnsubscribeLinks(settings)
    url = links.url(subscriber_id, email_hash)
    first_name = (name or "").strip().split(" ")[0]
    values = {"unsubscribe_url": url} | ({"first_name": first_name} if first_name else {})

    recipient = RecipientBuilder(settings).build(subscriber_id, "ada@example.com", email_hash, name)

    assert recipient.substitutions == substitutions(values)
    assert recipient.headers == links.headers(url)
    assert recipient.name == ((name or "").strip() or None)
    assert recipient.email == "ada@example.com" and recipient.subscriber_id == subscriber_id


def test_a_base_url_that_needs_escaping_is_escaped_in_the_html_part(settings: Settings) -> None:
    cfg = settings.model_copy(update={"base_url": "https://verdicts.example.com/a&b"})
    recipient = RecipientBuilder(cfg).build(7, "ada@example.com", "ab" * 32, "Zoë <Ünal>")
    url = UnsubscribeLinks(cfg).url(7, "ab" * 32)
    assert recipient.substitutions == substitutions({"unsubscribe_url": url, "first_name": "Zoë"})
    assert "&amp;b/unsubscribe/" in recipient.substitutions["%%UNSUBSCRIBE_URL%%"]
