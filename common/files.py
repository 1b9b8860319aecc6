"""One way to write a file atomically, and one way to read JSON back.

`write_atomic` writes to a temporary file in the target's folder, fsyncs it and renames it over
the target, so a reader sees the old file or the new one, never half of one. `mkstemp` creates
its file with mode 0600 whatever the umask; the file is given the mode a plain `open()` would
have (0o666 & ~umask) before the rename, so results, configs, sweep plans and claims stay
readable by the group and others under the usual umask 022.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
import threading

_REQUIRED = object()
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it; the lock keeps threads from racing)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb"):
    """A file object to write `path` through: it appears, mode 0o666 & ~umask, only when the
    block ends without an exception (then a reader sees the whole new file or the old one)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically, mode 0o666 & ~umask."""
    with atomic_file(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 2) -> None:
    """`obj` as JSON (sorted keys, so equal objects give equal files), atomically."""
    write_atomic(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def read_jsonl(path: str | os.PathLike) -> list:
    """Every whole JSON line of `path`, in order (metrics, events); a line cut short by a kill
    is skipped, the rest of the file is still good. A missing file raises FileNotFoundError."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def read_json(path: str | os.PathLike, default=_REQUIRED):
    """The JSON in `path`. With `default`, a missing or unparsable file gives `default`
    instead of raising (claims, caches and results that may not exist yet)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        if default is _REQUIRED:
            raise
        return default
