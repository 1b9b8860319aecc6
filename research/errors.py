"""One error taxonomy and one set of exit codes for every command.

`UserError` is the base of every error a user can fix (bad config, missing data, unreadable
tokenizer, ...): its message is one line naming the problem and the fix. Entry points print
it as `error: ...` and exit with `EXIT_USER`; anything else is a bug and keeps its traceback.
Sweep children classify failures with isinstance against these classes, never by name.
"""

from __future__ import annotations

# Exit codes shared by train, sample, bench, sweep and the sweep's child processes.
EXIT_OK = 0
EXIT_FAILED = 1  # the run itself failed (diverged) or a sweep has failed runs; also bugs
EXIT_USER = 2  # a UserError: fix the input and run again
EXIT_STORAGE = 3  # disk full, read-only, permission denied or quota: fix the storage
EXIT_CORRUPT_CHECKPOINT = 4  # no readable checkpoint to resume and starting over was refused
EXIT_INTERRUPTED = 130


class UserError(ValueError):
    """An input the user can fix; the message is one line naming the problem and the fix."""

    exit_code = EXIT_USER


class ConfigError(UserError):
    """A config that cannot work; the message names the problem and the fix."""


class StorageError(UserError):
    """The file system refused a write or read (ENOSPC, EROFS, EACCES, EDQUOT)."""

    exit_code = EXIT_STORAGE


class CheckpointError(UserError):
    """No checkpoint step can be restored and the run cannot start from scratch."""

    exit_code = EXIT_CORRUPT_CHECKPOINT
