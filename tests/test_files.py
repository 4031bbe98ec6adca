"""files.write_atomic: the one way the archive, the feed cache and the outbox write a file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from newsletter.files import write_atomic


def test_text_and_bytes_are_written_whole_with_no_temporary_file_left(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "page.html"  # the folders are made
    write_atomic(target, "Zoë\r\n李\n")
    assert target.read_bytes() == "Zoë\r\n李\n".encode()  # UTF-8, line ends untouched
    write_atomic(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert [p.name for p in target.parent.iterdir()] == ["page.html"]


def test_mode_is_set_and_a_fresh_temporary_file_is_private_by_default(tmp_path: Path) -> None:
    public, private = tmp_path / "public.txt", tmp_path / "private.txt"
    write_atomic(public, "x", mode=0o644)
    write_atomic(private, "x")
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_a_named_temporary_file_is_used_and_removed_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, temp = tmp_path / "m.eml", tmp_path / "m.tmp"
    write_atomic(target, b"one", temp=temp)
    assert target.read_bytes() == b"one" and not temp.exists()

    def crash(src: object, dst: object) -> None:
        assert Path(str(src)) == temp and temp.read_bytes() == b"two"  # written whole first
        raise OSError("disk full")

    monkeypatch.setattr("newsletter.files.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"two", temp=temp)
    assert target.read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.eml"]
