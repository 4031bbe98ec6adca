"""Files written whole or not at all: the one atomic-write helper (archive, feed cache, outbox)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, temp: Path | None = None, mode: int | None = None) -> None:
    """Write ``data`` (a str as UTF-8, line ends as given) to ``path`` atomically: into a
    temporary file in the same folder, flushed and fsynced, then renamed over ``path``
    (``os.replace``). A reader sees the old file or the new one, never half of one; when
    anything fails the temporary file is removed and ``path`` is left as it was.

    ``temp``: the temporary file's own name, for a protocol that recognises it after a crash
    (the outbox's ``<name>.tmp`` beside its ``<name>.eml``). By default a fresh unique
    ``.<name>.*.tmp`` in ``path``'s folder, which is created if need be.
    ``mode``: the file's permissions; by default the temporary file's (0600 for a fresh
    unique one, the umask's for a named one).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if temp is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temp = Path(name)
        handle = os.fdopen(fd, "wb")
    else:
        handle = open(temp, "wb")  # noqa: SIM115 - closed below, before the rename
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
