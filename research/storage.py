"""Storage faults as one-line errors: disk full, read-only, permission denied, over quota.

An OSError with one of these errnos, raised by our own writes or by orbax/tensorstore (which
report it inside a message such as `... No space left on device [os_error_code='28']`), becomes
a `StorageError` naming the path, the errno and the fix. Every other error passes unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re

from research.errors import StorageError

_FIX = {
    errno.ENOSPC: "free space there (or use another --workdir), then run again to resume",
    errno.EDQUOT: "free space or raise the quota (or use another --workdir), then run again",
    errno.EROFS: "the file system is mounted read-only; use a writable --workdir",
    errno.EACCES: "make it writable by this user, or use another --workdir",
    errno.EPERM: "make it writable by this user, or use another --workdir",
}
STORAGE_ERRNOS = frozenset(_FIX)

# tensorstore: `Failed writing: "PATH": ... [os_error_code='28']` (the path is the first quoted
# file name, when the message has one).
_TS_CODE = re.compile(r"os_error_code='?(\d+)")
_TS_PATH = re.compile(r'(?:writing|reading|opening|creating|file)[^"]*"(/[^"]+)"')


def exception_chain(exc: BaseException):
    """`exc`, then what it was raised from or during, and so on."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def as_storage_error(exc: BaseException, default_path: str = "") -> StorageError | None:
    """The StorageError that `exc` (or an exception it was raised from) stands for, or None."""
    for e in exception_chain(exc):
        if isinstance(e, StorageError):
            return e
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            return storage_error(e.errno, e.filename or default_path)
        match = _TS_CODE.search(str(e))
        if match and int(match.group(1)) in STORAGE_ERRNOS:
            paths = _TS_PATH.findall(str(e))
            return storage_error(int(match.group(1)), paths[-1] if paths else default_path)
    return None


def storage_error(code: int, path) -> StorageError:
    name = errno.errorcode.get(code, str(code))
    where = os.fspath(path) if path else "the run directory"
    return StorageError(f"{where}: {os.strerror(code)} ({name}); {_FIX[code]}")


@contextlib.contextmanager
def storage_errors(default_path: str = ""):
    """Re-raise storage faults inside the block as StorageError (the original as its cause)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:  # noqa: BLE001 - only storage faults are converted; others re-raise
        converted = as_storage_error(e, default_path)
        if converted is None:
            raise
        # orbax's background writers can hold the same failure in a task nobody awaits; asyncio
        # would log it with a traceback when the task is collected. It is reported once, here.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        raise converted from e
