"""Signed tokens: one salt per purpose, expiry told apart from tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer

from newsletter.config import Settings
from newsletter.errors import TokenError
from newsletter.tokens import (
    HASH_CHARS,
    SALT_UNSUBSCRIBE,
    ExpiredTokenError,
    InvalidTokenError,
    UnsubscribeSigner,
    check_csrf_token,
    make_admin_session,
    make_confirm_token,
    make_csrf_token,
    make_unsubscribe_token,
    read_admin_session,
    read_confirm_token,
    read_expired_confirm_token,
    read_unsubscribe_token,
    sign_unsubscribe,
)

HASH = "a" * 16 + "b" * 48


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return Settings(secret_key="k1" * 16, data_dir=tmp_path, confirm_token_max_age=3600)  # type: ignore[arg-type]


def _tamper(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def test_confirm_token_round_trip_binds_id_and_hash(cfg: Settings) -> None:
    claim = read_confirm_token(cfg, make_confirm_token(cfg, 42, HASH))
    assert claim.subscriber_id == 42
    assert HASH.startswith(claim.hash_prefix) and len(claim.hash_prefix) >= 16
    assert abs((claim.issued_at - datetime.now(UTC)).total_seconds()) < 5


def test_tampered_confirm_token_is_invalid_not_expired(cfg: Settings) -> None:
    token = make_confirm_token(cfg, 42, HASH)
    with pytest.raises(InvalidTokenError) as caught:
        read_confirm_token(cfg, _tamper(token))
    assert caught.value.expired is False
    assert caught.value.http_status == 400
    with pytest.raises(InvalidTokenError):
        read_confirm_token(cfg, "not-a-token")


def test_expired_confirm_token_is_told_apart_and_keeps_its_payload(cfg: Settings) -> None:
    with time_machine.travel(datetime.now(UTC) - timedelta(hours=2), tick=False):
        token = make_confirm_token(cfg, 7, HASH)
    with pytest.raises(ExpiredTokenError) as caught:
        read_confirm_token(cfg, token)
    assert caught.value.expired is True
    assert isinstance(caught.value, TokenError)
    assert caught.value.payload == [7, HASH[:16]]
    # still genuine: a fresh link may be sent for it
    assert read_expired_confirm_token(cfg, token).subscriber_id == 7


def test_salts_keep_purposes_apart(cfg: Settings) -> None:
    unsubscribe = make_unsubscribe_token(cfg, 42, HASH)
    confirm = make_confirm_token(cfg, 42, HASH)
    with pytest.raises(InvalidTokenError):
        read_confirm_token(cfg, unsubscribe)
    with pytest.raises(InvalidTokenError):
        read_unsubscribe_token(cfg, confirm)
    assert read_unsubscribe_token(cfg, unsubscribe).subscriber_id == 42


def test_another_secret_key_rejects_every_token(cfg: Settings, tmp_path: Path) -> None:
    other = Settings(secret_key="k2" * 16, data_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(InvalidTokenError):
        read_unsubscribe_token(other, make_unsubscribe_token(cfg, 1, HASH))
    with pytest.raises(InvalidTokenError):
        read_confirm_token(other, make_confirm_token(cfg, 1, HASH))


def test_unsubscribe_tokens_do_not_expire(cfg: Settings) -> None:
    with time_machine.travel(datetime.now(UTC) - timedelta(days=400), tick=False):
        token = make_unsubscribe_token(cfg, 9, HASH)
    assert read_unsubscribe_token(cfg, token).subscriber_id == 9


def test_admin_session_dies_with_a_new_admin_token(cfg: Settings) -> None:
    value, nonce = make_admin_session(cfg, "admin-1")
    assert read_admin_session(cfg, value, "admin-1") == nonce
    with pytest.raises(InvalidTokenError):
        read_admin_session(cfg, value, "admin-2")
    with pytest.raises(InvalidTokenError):
        read_admin_session(cfg, _tamper(value), "admin-1")


def test_csrf_token_is_bound_to_its_session(cfg: Settings) -> None:
    token = make_csrf_token(cfg, "nonce-1")
    check_csrf_token(cfg, token, "nonce-1")
    with pytest.raises(InvalidTokenError):
        check_csrf_token(cfg, token, "nonce-2")
    with pytest.raises(InvalidTokenError):
        check_csrf_token(cfg, None, "nonce-1")


@given(
    secret=st.text(min_size=1, max_size=64),
    subscriber_id=st.integers(min_value=0, max_value=10**18 - 1),
    email_hash=st.text(alphabet="0123456789abcdef", min_size=16, max_size=64),
)
def test_the_fast_unsubscribe_signer_makes_itsdangerous_tokens_byte_for_byte(
    secret: str, subscriber_id: int, email_hash: str
) -> None:
    """Tokens already in readers' inboxes keep working, and itsdangerous checks ours."""
    reference = Signer(secret, salt=SALT_UNSUBSCRIBE)
    ours = sign_unsubscribe(UnsubscribeSigner(secret), subscriber_id, email_hash)
    value = f"{subscriber_id}-{email_hash[:HASH_CHARS]}"
    assert ours == reference.sign(value).decode("ascii")
    assert reference.unsign(ours).decode("ascii") == value
