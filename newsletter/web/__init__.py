"""The web app: subscribe, confirm, unsubscribe, archive, admin, webhooks. ``create_app(settings)``."""

from newsletter.web.app import create_app

__all__ = ["create_app"]
