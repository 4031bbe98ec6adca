"""The exception tree. Every error the newsletter raises on purpose is a NewsletterError.

    NewsletterError                 exit 1, HTTP 400
    ├── ConfigError                 a setting is missing or malformed
    ├── SourceError                 a comparison page/file/feed cannot be read (file, line)
    ├── NotFoundError               HTTP 404: an issue, comparison or subscriber that is not there
    ├── IssueError                  an issue cannot be built or changed (e.g. frozen after sending)
    ├── RenderError                 a template or MJML failed to render
    ├── SubscriberError             HTTP 422: a bad address or subscriber operation
    ├── TokenError                  HTTP 400: a tampered or expired signed token
    ├── AuthError                   HTTP 401: admin without a valid token
    ├── RateLimitedError            HTTP 429: too many requests (carries retry_after)
    ├── DeliveryError               a send cannot go on
    │   └── ProviderError           HTTP 502: the provider said no (status, field, message)
    │       ├── ProviderRejectedError   4xx that retrying will not fix (400/401/403/413)
    │       └── ProviderUnavailableError  429/5xx/timeouts that outlived their retries
    └── SchedulerError              the weekly job cannot run

Third-party exceptions are translated at the boundary where they happen
(``raise ProviderError(...) from exc``); the CLI prints ``str(error)`` on one
line and exits with ``exit_code``; the web app renders it with ``http_status``.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every deliberate error: a message fit for a user, no traceback."""

    exit_code: int = 1
    http_status: int = 400


class ConfigError(NewsletterError):
    pass


class SourceError(NewsletterError):
    """A source that cannot be read. Names the file (or URL) and the line."""

    def __init__(self, message: str, *, source: str = "<input>", line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.reason = message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class NotFoundError(NewsletterError):
    http_status = 404


class IssueError(NewsletterError):
    pass


class RenderError(NewsletterError):
    http_status = 500


class SubscriberError(NewsletterError):
    http_status = 422


class TokenError(NewsletterError):
    http_status = 400


class AuthError(NewsletterError):
    http_status = 401


class RateLimitedError(NewsletterError):
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class DeliveryError(NewsletterError):
    pass


class ProviderError(DeliveryError):
    """The provider refused or failed. ``field`` is the provider's name for the bad input.

    HTTP 502: the request was fine, the service behind us was not (never a 500).
    """

    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        field: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.field = field
        detail = f"{provider}"
        if status is not None:
            detail += f" {status}"
        if field:
            detail += f" (field {field!r})"
        super().__init__(f"{detail}: {message}")


class ProviderRejectedError(ProviderError):
    pass


class ProviderUnavailableError(ProviderError):
    pass


class SchedulerError(NewsletterError):
    pass


def driver_message(exc: Exception) -> str:
    """A database driver's error as one short line: its first line (psycopg adds the SQL
    on the next ones), at most 300 characters."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or ["unknown database error"])[0][:300]
