"""One relay per SQLite file: an exclusive lock on `<database>.lock`, held for the life of the process.

At start `relay serve` frees every lease in the file, taking them to be its own dead predecessor's. A second
process on the same file (an overlapping restart, a second pod on one volume) would free the leases of a
relay that is still sending, and the same notification would go out twice. The lock is taken before the
store is opened; the holder's pid and host are written into the lock file so the refusal can name it.
PostgreSQL needs none of this: there each relay holds an advisory lock of its own (see store.postgres).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from relay.errors import StartupError


class DatabaseLock:
    """An flock on a file beside the database; the kernel drops it when the process ends, however it ends."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.path = Path(f"{database}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StartupError naming who holds it (or why the file cannot be made)."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StartupError(f"cannot lock {self.path}: {exc.strerror}") from exc
            who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "a process that is starting"
            raise StartupError(f"{self.database} is in use by another relay ({who}; lock {self.path}): "
                               "one relay per SQLite file, use PostgreSQL for several") from None
        with contextlib.suppress(OSError):  # not on a read-only lock file
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if not (isinstance(exc, PermissionError) and self.path.exists()):
                raise StartupError(_unusable(self.database, exc)) from exc
        # A read-only lock file still locks (flock needs no write access); SQLite then says what it cannot write.
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise StartupError(f"cannot use the database {self.database}: cannot read {self.path} "
                               f"({exc.strerror})") from exc

    def release(self) -> None:
        """Let go (the file stays: removing it would let two processes lock two different files)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _unusable(database: str, exc: OSError) -> str:
    folder = Path(database).absolute().parent
    if exc.errno == errno.ENOENT:
        return f"cannot use the database {database}: directory {folder} does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot use the database {database}: directory {folder} is not writable ({exc.strerror})"
    return f"cannot use the database {database}: {exc.strerror}"


def lock_database(url: str) -> DatabaseLock | None:
    """The lock for a `sqlite:///` URL, taken; None for PostgreSQL and in-memory databases."""
    if not url.startswith("sqlite:///"):
        return None
    database = url.removeprefix("sqlite:///")
    if database in ("", ":memory:"):
        return None
    lock = DatabaseLock(database)
    lock.acquire()
    return lock
