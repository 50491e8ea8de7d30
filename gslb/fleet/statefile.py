"""The state file: JSON under ``--state-dir``, written atomically, read back with reasons.

A crash or power cut in the middle of a write must never leave half a file: the new content
goes to a temporary file in the same directory, is flushed to disk, then renamed over the old
one (``os.replace`` is atomic on POSIX), and the directory itself is synced so the rename
survives a power cut too. A corrupt or unreadable file is reported with its reason and the
server starts without it rather than refusing to answer DNS.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MAX_STATE_BYTES = 16 * 1024 * 1024  # far beyond any real set of overrides


class StateError(Exception):
    """The state file exists but cannot be used; the message says why."""


def write_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename still happened
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """The file's JSON, None when there is no file; StateError when it is unusable."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror or exc}") from None
    if size > MAX_STATE_BYTES:
        raise StateError(f"{path}: {size} bytes, more than the {MAX_STATE_BYTES} allowed")
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{path}: not valid JSON ({exc})") from None
