"""Signing SendGrid Event Webhook bodies the way SendGrid does, for tests and the bench."""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.delivery.events import SIGNATURE_HEADER, TIMESTAMP_HEADER


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The value of NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY for ``key``: base64 of its DER."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """What SendGrid does: ECDSA(SHA-256) over timestamp + payload, base64 of the DER signature."""
    timestamp = timestamp or str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }
