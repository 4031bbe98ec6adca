"""Hostile input, fuzzed: the CSV importer, POST /subscribe and the SendGrid event webhook.

Everything runs on the real parts (SQLite and PostgreSQL through the ``env`` fixture,
the real app in-process, real EC signatures). Each property says what must hold
whatever the input: no exception other than the project's own, no 5xx, and nothing
half-written (the database moves by exactly what the answer or the report says).

The bugs these found (odd webhook values, non-ASCII addresses, half-written
imports, names dropped after a 202...) are fixed; the fixed tests below name them.
Budgets: ``max_examples`` 40-100 per property, the whole module well under a minute.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from newsletter import mail, subscribers
from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.delivery import delivery_status, send_issue
from newsletter.delivery.events import SIGNATURE_HEADER
from newsletter.delivery.message_types import wire_address
from newsletter.errors import SubscriberError
from newsletter.tables import DeliveryRow, SubscriberRow, SuppressionRow, WebhookEventRow
from newsletter.web import create_app
from tests.support.delivery_fixtures import add_subscribers, make_issue
from tests.support.web import TestClient
from tests.support.webhooks import public_key_b64, sign

FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# =====================================================================================
# 1. The CSV importer
# =====================================================================================

_GOOD_LOCALS = ["user", "User.Name", "a+tag", "x_y", "o'neil"]
_GOOD_DOMAINS = ["example.com", "Example.COM", "sub.example.org", "bücher.de", "xn--bcher-kva.de"]
_BAD_ADDRESSES = [
    "not-an-address",
    "ÄB@example.com",  # a non-ASCII local part needs SMTPUTF8: refused
    "a@b.com\r\nBcc: x@y.com",
    "a@b.com\nBcc: x@y.com",
    "two@@example.com",
    "a\x00b@example.com",
    "@example.com",
    "a@",
    "a b@example.com",
    "x" * 300 + "@example.com",
    "y" * 140_000 + "@example.com",  # over csv's field limit (131,072): a csv.Error for that row
]
_BAD_NAMES = ["a\x00b", "esc\x1b[0m", "del\x7f", "n" * 201]
_NAME_ALPHABET = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Cs", "Zl", "Zp"),  # controls are refused, separators collapse
)
_JUNK_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(list('\r\n",;@\x00\ufeff')),
    max_size=40,
)


@st.composite
def csv_plans(draw: st.DrawFn) -> dict[str, Any]:
    """A CSV as rows of known kinds: good, bad address, bad name, missing cells, duplicate, junk..."""
    extra = draw(
        st.lists(st.sampled_from(["first", "Company", "notes", "E-Mail", "ID"]), max_size=2, unique=True)
    )
    email_header = draw(st.sampled_from(["email", "Email", " EMAIL ", "email "]))
    with_name = draw(st.booleans())
    columns = [email_header, *(["Name"] if with_name else []), *extra]
    columns = draw(st.permutations(columns))
    kinds = st.sampled_from(
        ["good", "good", "good", "bad", "badname", "short", "blank", "dup", "junk", "again", "gone"]
    )
    rows = draw(
        st.lists(
            st.tuples(
                kinds,
                st.sampled_from(_GOOD_LOCALS),
                st.sampled_from(_GOOD_DOMAINS),
                st.text(_NAME_ALPHABET, max_size=30),
                st.sampled_from(_BAD_ADDRESSES),
                st.sampled_from(_BAD_NAMES),
                st.lists(_JUNK_TEXT, min_size=0, max_size=5),
            ),
            max_size=25,
        )
    )
    return {
        "columns": columns,
        "with_name": with_name,
        "rows": rows,
        "terminator": draw(st.sampled_from(["\n", "\r\n", "\r"])),
        "bom": draw(st.booleans()),
        "as_file": draw(st.booleans()),
        "chunk": draw(st.sampled_from([1, 2, 3, 5000])),
        "confirmed": draw(st.booleans()),
    }


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _blank(cells: list[str]) -> bool:
    return not cells or all(not cell.strip() for cell in cells)


def _csv_line(cells: list[str], terminator: str) -> str:
    """One CSV record, quoting what needs it (csv.writer leaves a lone CR unquoted after "\\n" rows)."""
    quoted = [
        '"' + cell.replace('"', '""') + '"' if any(ch in cell for ch in ',"\r\n') else cell for cell in cells
    ]
    return ",".join(quoted) + terminator


def test_csv_import_fuzzed_rows_are_imported_once_or_reported_by_line(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    mail.add(settings, engine, ["gone@example.com"], confirmed=True)
    subscribers.remove(engine, "gone@example.com")  # erased: suppressed, never re-imported
    earlier: list[str] = []  # good addresses imported by earlier examples ("again" rows reuse them)

    @FUZZ
    @given(plan=csv_plans())
    def check(plan: dict[str, Any]) -> None:
        token = uuid.uuid4().hex[:8]
        columns: list[str] = plan["columns"]
        email_at = [c.strip().lower() for c in columns].index("email")
        name_at = [c.strip().lower() for c in columns].index("name") if plan["with_name"] else None
        terminator: str = plan["terminator"]
        text = _csv_line(columns, terminator)
        fresh: dict[str, str | None] = {}  # first spelling of each new good address -> its stored name
        known_again: list[str] = []
        bad_lines: dict[int, str] = {}
        junk_lines: set[int] = set()
        suppressed_rows = 0
        records = 0
        for index, (kind, local, domain, name, bad, bad_name, junk) in enumerate(plan["rows"]):
            line = len(_LINE_BREAK.findall(text)) + 1
            cells = [""] * len(columns)
            address = f"{local}.{token}.{index}@{domain}"
            if kind in ("good", "badname"):
                cells[email_at] = address
                if name_at is not None:
                    cells[name_at] = bad_name if kind == "badname" else name
                if kind == "badname" and name_at is not None:
                    bad_lines[line] = address
                else:
                    fresh[address] = (" ".join(name.split()) or None) if name_at is not None else None
            elif kind == "bad":
                cells[email_at] = bad
                bad_lines[line] = bad
            elif kind == "short" and email_at > 0:
                cells = ["x"] * email_at  # the row ends before its email column
                bad_lines[line] = ""
            elif kind == "dup" and fresh:
                first = next(iter(fresh))
                local_part, _, dom = first.rpartition("@")
                cells[email_at] = f"{local_part}@{dom.upper()}"  # the same address, domain in capitals
            elif kind == "again" and earlier:
                cells[email_at] = earlier[index % len(earlier)]
                known_again.append(cells[email_at])
            elif kind == "gone":
                cells[email_at] = "Gone@Example.com"
                suppressed_rows += 1
            elif kind == "junk":
                cells = junk
                if not _blank(cells):
                    junk_lines.add(line)
            else:
                cells = []
            text += _csv_line(cells, terminator)
            records += 0 if _blank(cells) else 1
        if plan["bom"]:
            text = "\ufeff" + text
        total_lines = len(_LINE_BREAK.findall(text)) + 1
        before = _count(engine, SubscriberRow)

        source: Any
        if plan["as_file"]:
            source = tmp_path / f"{token}.csv"
            source.write_bytes(text.encode("utf-8"))
        else:
            source = io.StringIO(text, newline="")
        report = subscribers.import_csv(
            settings, engine, source, confirmed=plan["confirmed"], chunk_size=plan["chunk"]
        )

        # nothing half-written: the table grew by exactly what the report says
        assert _count(engine, SubscriberRow) == before + report.imported
        assert report.rows == records
        lines = [error.line for error in report.errors]
        assert lines == sorted(lines) and all(2 <= line <= total_lines for line in lines)
        assert set(bad_lines) <= set(lines), (bad_lines, report.errors)
        assert set(lines) <= set(bad_lines) | junk_lines, (bad_lines, junk_lines, report.errors)
        for error in report.errors:
            assert error.message and "\n" not in error.message
            if error.line in bad_lines and error.line not in junk_lines:
                assert error.value == bad_lines[error.line] or error.value == ""
        # every good row is there exactly once, as written (normalised), with its name
        assert report.imported >= len(fresh) - len(junk_lines)
        assert report.suppressed >= min(1, suppressed_rows)  # a second one is an in-file duplicate
        for address, name in fresh.items():
            found = subscribers.find_subscriber(engine, address)
            assert found is not None, address
            assert found.email == subscribers.normalize_email(address)
            assert found.status == ("confirmed" if plan["confirmed"] else "pending")
            assert found.name == name and found.source == "import"
            with engine.connect() as conn:
                same = select(func.count()).where(SubscriberRow.email_hash == found.email_hash)
                assert conn.execute(same).scalar_one() == 1
        for address in known_again:
            assert subscribers.find_subscriber(engine, address) is not None
        gone = subscribers.find_subscriber(engine, "gone@example.com")
        assert gone is not None and gone.email is None  # still erased: never re-imported
        earlier.extend(list(fresh)[:3])

    check()


_BYTE_BITS = st.sampled_from(
    [
        b"\x00",
        b"\xef\xbb\xbf",
        b"\r",
        b"\n",
        b"\r\n",
        b'"',
        b",",
        b"\xff",
        b"\xc3",
        b"ok@example.com",
        b"A@B.CO",
        b"\xc3\xbc@b\xc3\xbccher.de",
        b"x" * 300,
    ]
)


def test_csv_import_of_arbitrary_bytes_reports_or_refuses_and_writes_consistently(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    @FUZZ
    @given(
        header=st.sampled_from([b"email,name\n", b"\xef\xbb\xbfEmail\r\n", b"name;email\n", b""]),
        body=st.lists(st.binary(max_size=30) | _BYTE_BITS, max_size=30).map(b"".join),
    )
    def check(header: bytes, body: bytes) -> None:
        path = tmp_path / f"{uuid.uuid4().hex}.csv"
        path.write_bytes(header + body)
        before = _count(engine, SubscriberRow)
        try:
            report = subscribers.import_csv(settings, engine, path)
        except SubscriberError as exc:
            assert str(exc)
            assert "\n" not in str(exc) and "\r" not in str(exc)
            assert _count(engine, SubscriberRow) == before  # refused: nothing written
            return
        assert _count(engine, SubscriberRow) == before + report.imported
        physical = len(re.findall(rb"\r\n|\r|\n", header + body)) + 1
        assert all(2 <= error.line <= physical for error in report.errors)

    check()


def test_csv_huge_unquoted_field_is_one_bad_row_and_the_rest_is_imported(
    settings: Settings, engine: Engine
) -> None:
    text = (
        "email,name\n"
        "ok1@example.com,A\n"
        + "y" * 140_000
        + "@example.com,B\n"
        + "ok2@example.com,"
        + "n" * 140_000
        + "\nok3@example.com,C\n"
    )
    report = subscribers.import_csv(settings, engine, io.StringIO(text, newline=""))
    assert [error.line for error in report.errors] == [3, 4]
    assert report.imported == 2
    assert {s.email for s in subscribers.list_subscribers(engine)} == {"ok1@example.com", "ok3@example.com"}


def test_csv_stream_with_a_bom_then_a_spaced_header_is_read(settings: Settings, engine: Engine) -> None:
    report = subscribers.import_csv(
        settings, engine, io.StringIO("\ufeff Email ,name\nada@example.com,Ada\n")
    )
    assert report.imported == 1


def test_csv_header_error_is_one_line(settings: Settings, engine: Engine) -> None:
    with pytest.raises(SubscriberError) as caught:
        subscribers.import_csv(settings, engine, io.StringIO('"mail\r\nBcc",\x1b[31mname\n', newline=""))
    message = str(caught.value)
    assert "'email' column" in message
    assert not re.search(r"[\x00-\x1f\x7f]", message), repr(message)


def test_csv_that_is_not_utf8_after_the_first_chunk_writes_nothing(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "latin1-tail.csv"
    rows = "".join(f"user{index}@example.com\n" for index in range(subscribers.IMPORT_CHUNK + 2000))
    path.write_bytes(b"email\n" + rows.encode() + "zoë@example.com\n".encode("latin-1"))
    with pytest.raises(SubscriberError, match="not UTF-8"):
        subscribers.import_csv(settings, engine, path)
    assert _count(engine, SubscriberRow) == 0


# =====================================================================================
# 2. POST /subscribe
# =====================================================================================

ALLOWED_HEADERS = {
    "to",
    "subject",
    "date",
    "message-id",
    "from",
    "reply-to",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
}


def raw_headers(data: bytes) -> list[tuple[str, str]]:
    """The top-level header fields of a raw .eml, unfolded, checked for bare CR/LF."""
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b""), head
    fields = []
    for line in re.sub(rb"\r\n[ \t]+", b" ", head).split(b"\r\n"):
        name, sep, value = line.partition(b":")
        assert sep and re.fullmatch(rb"[!-9;-~]+", name), line
        fields.append((name.decode().lower(), value.strip().decode("ascii")))
    return fields


@pytest.fixture
def web_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NEWSLETTER_SUBSCRIBE_RATE_LIMIT", "1000000")  # reach the handler, not the limiter
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def web_client(web_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings), raise_server_exceptions=False) as client:
        yield client


def _eml_files(settings: Settings) -> set[Path]:
    folder = Path(settings.outbox_dir)
    return set(folder.glob("*.eml")) if folder.is_dir() else set()


_SEPARATORS = ["\r\n", "\n", "\r", "%0d%0a", "%0D%0A", "\u2028", "\x85", "\t", "\x00", " "]
_INJECTIONS = st.builds(
    lambda who, sep, header, other: f"{who}{sep}{header}: {other}",
    st.sampled_from(["a@b.com", "reader@example.com", "ü@bücher.de"]),
    st.sampled_from(_SEPARATORS),
    st.sampled_from(["Bcc", "Cc", "To", "Subject", "Content-Type"]),
    st.sampled_from(["x@y.com", "victim@example.org", "text/html"]),
)
_ADDRESSES = st.builds(
    lambda local, n, domain: f"{local}{n}@{domain}",
    st.sampled_from(["ada", "Ada.Lovelace", "a+b", "ü", "用户", "o'neil", "postmaster"]),
    st.integers(0, 10_000),
    st.sampled_from(
        ["example.com", "EXAMPLE.org", "bücher.de", "xn--bcher-kva.de", "münchen.example", "例え.jp", "b.co"]
    ),
)
_OVERLONG = st.sampled_from([255, 300, 10_500, 17_000]).map(lambda n: "x" * n + "@example.com")
_EMAILS = st.one_of(
    _ADDRESSES,
    _INJECTIONS,
    _OVERLONG,
    st.sampled_from(["", " ", "\r\n", "@", "a@", "@b.com", "a@b.com", " padded@example.com "]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60),
)
# Names the app stores.
_NAMES = st.none() | st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12)
    | st.sampled_from(["\r\n", "\t", "\n", "Bcc: x@y.com"]),
    max_size=5,
).map("".join)


def _as_request(encoding: str, email_value: str, name: str | None, honeypot: str) -> dict[str, Any]:
    fields = {"email": email_value, **({"name": name} if name is not None else {})}
    if honeypot:
        fields["website"] = honeypot
    if encoding == "form":
        return {"data": fields}
    if encoding == "json":
        return {"json": fields}
    if encoding == "multipart":
        return {"files": {key: (None, value) for key, value in fields.items()}}
    # a hand-made urlencoded body that keeps "%" as typed: "%0d%0a" reaches the server as CR LF
    raw = "&".join(f"{key}={quote(value, safe='@%')}" for key, value in fields.items())
    return {"content": raw.encode("ascii"), "headers": {"content-type": "application/x-www-form-urlencoded"}}


def _server_sees(encoding: str, value: str) -> str:
    """The address as the app reads it (starlette decodes a urlencoded value with unquote_plus)."""
    return unquote_plus(quote(value, safe="@%")) if encoding == "raw" else value


def test_subscribe_fuzz_never_5xx_stores_normalised_and_mails_no_injected_header(
    web_client: TestClient, web_settings: Settings
) -> None:
    engine = open_database(web_settings.database_url)

    @hypothesis_settings(FUZZ, max_examples=100)
    @given(
        encoding=st.sampled_from(["form", "json", "multipart", "raw"]),
        accept=st.sampled_from(["text/html", "application/json", "*/*"]),
        email_value=_EMAILS,
        name=_NAMES,
        honeypot=st.sampled_from(["", "", "", "http://spam.example"]),
    )
    def check(encoding: str, accept: str, email_value: str, name: str | None, honeypot: str) -> None:
        before_rows = _count(engine, SubscriberRow)
        before_files = _eml_files(web_settings)
        seen = _server_sees(encoding, email_value)
        try:
            expected: str | None = subscribers.normalize_email(seen)
        except SubscriberError:
            expected = None
        existed = expected is not None and subscribers.find_subscriber(engine, expected) is not None
        request = _as_request(encoding, email_value, name, honeypot)
        headers = {"accept": accept, **request.pop("headers", {})}
        response = web_client.post("/subscribe", headers=headers, **request)
        event(f"{encoding} -> {response.status_code}")

        assert response.status_code < 500, response.text[:300]
        assert response.status_code in (200, 202, 413, 422), (response.status_code, response.text[:300])
        assert "Traceback" not in response.text
        new_files = _eml_files(web_settings) - before_files
        for path in new_files:  # whatever was mailed carries no header the input smuggled in
            fields = raw_headers(path.read_bytes())
            names = [field for field, _ in fields]
            assert set(names) <= ALLOWED_HEADERS, names
            assert names.count("to") == 1 and "bcc" not in names and "cc" not in names
        after_rows = _count(engine, SubscriberRow)
        if response.status_code >= 400 or honeypot:
            assert after_rows == before_rows and not new_files  # refused or trapped: nothing stored
            assert expected is None or honeypot or response.status_code == 413
            return
        assert expected is not None, f"accepted {seen!r}, which does not normalise"
        found = subscribers.find_subscriber(engine, expected)
        assert found is not None and found.email == expected, (seen, found)
        assert "\r" not in expected and "\n" not in expected
        assert after_rows == before_rows + (0 if existed else 1)
        if not existed:
            mailed = [dict(raw_headers(path.read_bytes()))["to"] for path in new_files]
            assert mailed == [wire_address(expected)]  # an IDN domain goes out in ASCII

    check()


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@b.com\r\nBcc: x@y.com"},
        {"email": "a@b.com%0d%0aBcc: x@y.com"},
        {"email": ["a@b.com"]},
        {"email": 5},
        {"email": {"address": "a@b.com"}},
        {"email": True},
        {"email": None},
        {},
        {"email": "x" * 11_000 + "@example.com"},
        [{"email": "a@b.com"}],
        "a@b.com",
        None,
    ],
    ids=lambda body: repr(body)[:30],
)
def test_subscribe_json_of_the_wrong_shape_is_a_422(
    web_client: TestClient, web_settings: Settings, body: Any
) -> None:
    engine = open_database(web_settings.database_url)
    data = json.dumps(body).encode()
    response = web_client.post("/subscribe", content=data, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["status"] == 422
    assert _count(engine, SubscriberRow) == 0 and not _eml_files(web_settings)


def test_subscribe_unicode_and_punycode_domains_are_stored_normalised(
    web_client: TestClient, web_settings: Settings
) -> None:
    engine = open_database(web_settings.database_url)
    # A non-ASCII local part needs SMTPUTF8 from every relay: refused, with a message.
    refused = web_client.post("/subscribe", json={"email": "ü@bücher.de"})
    assert refused.status_code == 422 and "before the @-sign" in refused.json()["error"]
    response = web_client.post("/subscribe", json={"email": "user@xn--bcher-kva.de"})
    assert response.status_code == 202
    found = subscribers.find_subscriber(engine, "user@xn--bcher-kva.de")
    assert found is not None and found.email == "user@bücher.de" and found.status == "pending"
    # punycode, Unicode and capitals: one subscriber (addresses are matched case-insensitively)
    same = subscribers.find_subscriber(engine, "user@xn--bcher-kva.de")
    assert web_client.post("/subscribe", json={"email": "USER@BÜCHER.DE"}).status_code == 202
    assert subscribers.find_subscriber(engine, "USER@BÜCHER.DE") == same
    assert _count(engine, SubscriberRow) == 1


@pytest.mark.parametrize("address", ["user@xn--bcher-kva.de", "user@bücher.de"])
def test_an_accepted_unicode_address_gets_its_confirmation_mail(
    web_client: TestClient, web_settings: Settings, address: str
) -> None:
    assert web_client.post("/subscribe", json={"email": address}).status_code == 202
    mailed = [dict(raw_headers(path.read_bytes()))["to"] for path in _eml_files(web_settings)]
    assert mailed == ["user@xn--bcher-kva.de"]  # the domain in ASCII on the wire


@pytest.mark.parametrize(
    "name",
    ["n" * 201, "n" * 11_000, "a\x00b", "esc\x1b[0m", "\ud800"],
    ids=["201-chars", "11-KB", "NUL", "escape", "lone-surrogate"],
)
def test_an_accepted_subscribe_with_an_odd_name_is_stored(
    web_client: TestClient, web_settings: Settings, name: str
) -> None:
    engine = open_database(web_settings.database_url)
    body = json.dumps({"email": "ada@example.com", "name": name}).encode()  # ASCII: "\ud800" escaped
    response = web_client.post("/subscribe", content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500
    if response.status_code < 300:  # said "check your inbox": then it must be stored and mailed
        assert subscribers.find_subscriber(engine, "ada@example.com") is not None
        assert len(_eml_files(web_settings)) == 1


def test_send_issue_to_a_confirmed_idn_subscriber_completes(settings: Settings, engine: Engine) -> None:
    issue = make_issue(settings, engine)
    emails = add_subscribers(engine, 3)
    mail.add(settings, engine, ["user@xn--bcher-kva.de"], confirmed=True)
    report = send_issue(settings, engine, issue)
    assert report.sent == 4
    mailed = [dict(raw_headers(path.read_bytes()))["to"] for path in _eml_files(settings)]
    assert set(emails) <= set(mailed) and len(mailed) == 4


# =====================================================================================
# 3. The SendGrid event webhook
# =====================================================================================

WEBHOOK_LIMIT = 64 * 1024


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hook_settings(
    env: dict[str, str], key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY", public_key_b64(key))
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_MAX_BODY_BYTES", str(WEBHOOK_LIMIT))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def hook_client(hook_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings), raise_server_exceptions=False) as client:
        yield client


def _snapshot(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "events": conn.execute(select(func.count()).select_from(WebhookEventRow)).scalar_one(),
            "suppressions": conn.execute(select(func.count()).select_from(SuppressionRow)).scalar_one(),
            "statuses": sorted(conn.execute(select(SubscriberRow.id, SubscriberRow.status)).all()),
            "deliveries": sorted(conn.execute(select(DeliveryRow.id, DeliveryRow.state)).all()),
        }


_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    _TEXT,
)
_ANY = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


_EVENT_NAMES = [
    "processed",
    "delivered",
    "open",
    "click",
    "bounce",
    "dropped",
    "deferred",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
]


@st.composite
def sendgrid_events(draw: st.DrawFn, emails: list[str], ids: dict[str, int], issue: str) -> dict[str, Any]:
    """Half shaped like SendGrid's (matching our custom_args), half anything at all per field."""
    email_value = draw(st.sampled_from(emails))
    if draw(st.booleans()):
        item: dict[str, Any] = {
            "event": draw(st.sampled_from(_EVENT_NAMES)),
            "email": email_value,
            "timestamp": int(time.time()),
            "sg_event_id": draw(st.uuids().map(str) | st.sampled_from([f"ev-{n}" for n in range(8)])),
            "sg_message_id": "msg-1.filter",
            "issue_id": issue,
            "subscriber_id": str(ids[email_value]),
        }
        if item["event"] == "bounce":
            item["type"] = draw(st.sampled_from(["bounce", "blocked"]))
        return item
    item = {
        "event": draw(st.sampled_from(_EVENT_NAMES) | _ANY),
        "email": draw(st.just(email_value) | _ANY),
        "timestamp": draw(st.integers(0, 2**31 - 1) | _ANY),
    }
    for field, values in (
        ("sg_event_id", st.sampled_from([f"ev-{n}" for n in range(8)]) | _ANY),
        ("issue_id", st.sampled_from([issue, "1999-W01"]) | _ANY),
        ("subscriber_id", st.sampled_from(sorted(ids.values())).map(str) | _ANY),
        ("type", st.sampled_from(["bounce", "blocked"]) | _ANY),
        ("reason", st.sampled_from(["550 no such user", "Bounced Address", "unsubscribed", "spam"]) | _ANY),
        ("sg_message_id", _ANY),
    ):
        if draw(st.booleans()):
            item[field] = draw(values)
    return item


def test_webhook_fuzz_never_5xx_and_replays_change_nothing(
    hook_client: TestClient, hook_settings: Settings, key: ec.EllipticCurvePrivateKey
) -> None:
    engine = open_database(hook_settings.database_url)
    issue = make_issue(hook_settings, engine)
    emails = add_subscribers(engine, 6)
    send_issue(hook_settings, engine, issue)  # a real ledger (each example leaves it uncertain again)
    with engine.connect() as conn:
        ids = dict(conn.execute(select(SubscriberRow.email, SubscriberRow.id)).all())
    stored = {
        "delivered",
        "open",
        "click",
        "bounce",
        "dropped",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
    }

    @hypothesis_settings(FUZZ, max_examples=80)
    @given(
        batch=st.lists(sendgrid_events(emails, ids, issue), max_size=6),
        kind=st.sampled_from(
            [
                "signed",
                "signed",
                "signed",
                "object",
                "truncated",
                "not-a-list",
                "wrong-key",
                "other-body",
                "unsigned",
                "garbage-signature",
                "huge",
                "huge-chunked",
            ]
        ),
        cut=st.integers(1, 10_000),
        scalar=st.sampled_from([b"1", b"null", b'"x"', b"[1, 2]", b'[{"event": "open"}, 3]', b"true"]),
    )
    def check(batch: list[dict[str, Any]], kind: str, cut: int, scalar: bytes) -> None:
        with engine.begin() as conn:  # every row uncertain again: "processed" events may settle them
            conn.execute(update(DeliveryRow).values(state="in_flight"))
        body = json.dumps(batch).encode()
        headers = sign(key, body)
        expected: tuple[int, ...] = (200,)
        content: Any = body
        if kind == "object":
            body = json.dumps(batch[0] if batch else {}).encode()
            content, headers = body, sign(key, body)
        elif kind == "truncated":
            body = body[: max(1, min(cut, len(body) - 1))]
            content, headers, expected = body, sign(key, body), (400,)
        elif kind == "not-a-list":
            content, headers, expected = scalar, sign(key, scalar), (400,)
        elif kind == "wrong-key":
            headers, expected = sign(ec.generate_private_key(ec.SECP256R1()), body), (403,)
        elif kind == "other-body":
            content, expected = body + b" ", (403,)
        elif kind == "unsigned":
            headers, expected = {"content-type": "application/json"}, (403,)
        elif kind == "garbage-signature":
            headers[SIGNATURE_HEADER], expected = "not base64!", (403,)
        elif kind == "huge":
            content = b"[" + b" " * WEBHOOK_LIMIT + body + b"]"
            headers, expected = sign(key, content), (413,)
        elif kind == "huge-chunked":  # no Content-Length: the limit holds while streaming
            big = b"[" + b" " * WEBHOOK_LIMIT + b"]"
            headers, expected = sign(key, big), (413,)
            content = iter([big[i : i + 8192] for i in range(0, len(big), 8192)])
        before = _snapshot(engine)
        response = hook_client.post("/webhooks/sendgrid", content=content, headers=headers)
        event(f"{kind} -> {response.status_code}")
        assert response.status_code in expected, (kind, response.status_code, response.text[:300])
        after = _snapshot(engine)
        if response.status_code != 200:
            assert after == before  # refused: nothing written
            return
        result = response.json()
        event("some events new" if result["new"] else "no new event")
        event("some rows settled" if result["resolved"] else "nothing settled")
        assert after["events"] == before["events"] + result["new"]
        sent = batch if kind == "signed" else batch[:1]
        assert result["new"] <= sum(
            1 for e in sent if isinstance(e.get("event"), str) and e["event"] in stored
        )
        settled = sum(
            1
            for (row, state), (row_after, state_after) in zip(
                before["deliveries"], after["deliveries"], strict=True
            )
            if row == row_after and state != state_after
        )
        assert settled == result["resolved"]
        # SendGrid retries: the very same signed body again changes nothing at all
        replay = hook_client.post("/webhooks/sendgrid", content=content, headers=headers)
        assert replay.status_code == 200 and replay.json()["new"] == 0
        assert _snapshot(engine) == after

    check()


_ODD_BODIES = {
    "subscriber_id 1e400": b'[{"event": "open", "issue_id": "x", "subscriber_id": 1e400}]',
    "subscriber_id 10**20": b'[{"event": "open", "issue_id": "x", "subscriber_id": 100000000000000000000}]',
    "lone surrogate email": b'[{"event": "bounce", "email": "\\ud800@example.com"}]',
    "lone surrogate event id": b'[{"event": "open", "sg_event_id": "\\udfff"}]',
}


@pytest.mark.parametrize("body", list(_ODD_BODIES.values()), ids=list(_ODD_BODIES))
def test_webhook_odd_values_are_not_a_server_error(
    hook_client: TestClient, hook_settings: Settings, key: ec.EllipticCurvePrivateKey, body: bytes
) -> None:
    engine = open_database(hook_settings.database_url)
    before = _snapshot(engine)
    response = hook_client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert _snapshot(engine) == before


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    "body",
    [
        b'[{"event": "open", "sg_event_id": "a\\u0000b"}]',
        b'[{"event": "bounce", "email": "a\\u0000b@x.com"}]',
    ],
    ids=["event-id", "email"],
)
def test_webhook_nul_in_a_string_is_not_a_server_error_on_postgres(
    hook_client: TestClient, key: ec.EllipticCurvePrivateKey, body: bytes
) -> None:
    response = hook_client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert response.status_code < 500, response.text


def test_delivery_status_is_unchanged_by_refused_webhooks(
    hook_client: TestClient, hook_settings: Settings, key: ec.EllipticCurvePrivateKey
) -> None:
    """An uncertain row settles only with a correctly signed, complete body, and only once."""
    engine = open_database(hook_settings.database_url)
    issue = make_issue(hook_settings, engine)
    emails = add_subscribers(engine, 2)
    with engine.connect() as conn:
        ids = dict(conn.execute(select(SubscriberRow.email, SubscriberRow.id)).all())
    send_issue(hook_settings, engine, issue)
    with engine.begin() as conn:  # as a crash leaves it: the second row's batch in flight
        conn.execute(
            update(DeliveryRow).where(DeliveryRow.subscriber_id == ids[emails[1]]).values(state="in_flight")
        )
    processed = {
        "event": "processed",
        "email": emails[1],
        "issue_id": issue,
        "subscriber_id": str(ids[emails[1]]),
    }
    body = json.dumps([processed]).encode()
    for content, headers in [
        (body[:-1], sign(key, body[:-1])),
        (body, sign(ec.generate_private_key(ec.SECP256R1()), body)),
        (body + b"x" * WEBHOOK_LIMIT, sign(key, body + b"x" * WEBHOOK_LIMIT)),
    ]:
        assert hook_client.post("/webhooks/sendgrid", content=content, headers=headers).status_code in (
            400,
            403,
            413,
        )
        assert delivery_status(engine, issue).counts["in_flight"] == 1
    ok = hook_client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert ok.status_code == 200 and ok.json()["resolved"] == 1
    assert delivery_status(engine, issue).counts == {
        "pending": 0,
        "in_flight": 0,
        "sent": 2,
        "failed": 0,
        "suppressed": 0,
    }
    again = hook_client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert again.status_code == 200 and again.json()["resolved"] == 0


def test_raw_headers_helper_catches_an_injected_header() -> None:
    """The header check used above can fail: a smuggled Bcc or a bare LF is caught."""
    good = b"To: a@b.com\r\nSubject: hi\r\n folded\r\n\r\nbody"
    assert raw_headers(good) == [("to", "a@b.com"), ("subject", "hi folded")]
    for bad in (
        b"To: a@b.com\nBcc: x@y.com\r\n\r\nbody",
        b"To: a@b.com\rBcc: x@y.com\r\n\r\n",
        b"no colon\r\n\r\n",
    ):
        with pytest.raises(AssertionError):
            raw_headers(bad)
    assert "bcc" in dict(raw_headers(b"To: a@b.com\r\nBcc: x@y.com\r\n\r\nbody"))
