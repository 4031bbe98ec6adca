"""Subscribers: addresses, links, lookups, the status lifecycle, CSV in and out.

The modules, lowest first (each imports only those above it in this list):

* ``records``: the ``Subscriber`` record, the row mapper, the write transaction;
* ``addresses``: normalise and hash an address, clean a display name;
* ``links``: unsubscribe/confirm URLs and the List-Unsubscribe headers;
* ``queries``: lookups, search, counts, delivery history;
* ``lifecycle``: subscribe, confirm, unsubscribe, erase, add (state changes only);
* ``csv_io``: CSV import and export.

The confirmation and welcome mails live in ``newsletter.mail``, above delivery.
"""

from newsletter.subscribers.addresses import (
    LOCAL_PART_MAX,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    clean_name,
    email_hash,
    normalize_email,
)
from newsletter.subscribers.csv_io import (
    EXPORT_COLUMNS,
    IMPORT_CHUNK,
    ImportReport,
    RowError,
    export_csv,
    export_rows,
    import_csv,
    iter_export_csv,
)
from newsletter.subscribers.lifecycle import (
    PROVIDER_TRANSITIONS,
    RESEND_INTERVAL,
    AddResult,
    ConfirmResult,
    SubscribeResult,
    add,
    apply_provider_report,
    check_unsubscribe_token,
    confirm,
    remove,
    resend_confirmation,
    subscribe,
    unsubscribe,
    unsubscribe_by_token,
)
from newsletter.subscribers.links import (
    UnsubscribeLinks,
    confirm_url,
    list_unsubscribe_headers,
    unsubscribe_url,
)
from newsletter.subscribers.queries import (
    SEARCH_LIMIT,
    SubscriberPage,
    count_by_status,
    delivery_history,
    find_subscriber,
    get_subscriber,
    is_suppressed,
    list_subscribers,
    search_subscribers,
)
from newsletter.subscribers.records import STATUSES, Subscriber

__all__ = [
    "EXPORT_COLUMNS",
    "IMPORT_CHUNK",
    "LOCAL_PART_MAX",
    "MAX_EMAIL_LENGTH",
    "MAX_NAME_LENGTH",
    "PROVIDER_TRANSITIONS",
    "RESEND_INTERVAL",
    "SEARCH_LIMIT",
    "STATUSES",
    "AddResult",
    "ConfirmResult",
    "ImportReport",
    "RowError",
    "SubscribeResult",
    "Subscriber",
    "SubscriberPage",
    "UnsubscribeLinks",
    "add",
    "apply_provider_report",
    "check_unsubscribe_token",
    "clean_name",
    "confirm",
    "confirm_url",
    "count_by_status",
    "delivery_history",
    "email_hash",
    "export_csv",
    "export_rows",
    "find_subscriber",
    "get_subscriber",
    "import_csv",
    "is_suppressed",
    "iter_export_csv",
    "list_subscribers",
    "list_unsubscribe_headers",
    "normalize_email",
    "remove",
    "resend_confirmation",
    "search_subscribers",
    "subscribe",
    "unsubscribe",
    "unsubscribe_by_token",
    "unsubscribe_url",
]
