"""One writer per output file: an exclusive lock held for as long as a process writes the file.

The lock is an ``flock`` on a lock file beside the target (``.NAME.lock``, holding the owner's process id). The
operating system releases it when its process ends, however it ends, so a killed writer never leaves a file locked;
a second writer or resumer is refused at once with one line instead of mixing its groups into the file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gpicl_bench.atomic import write_error
from gpicl_bench.errors import UserError


class ExclusiveLock:
    """An exclusive, non-blocking lock on ``path`` for this process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> ExclusiveLock:
        """Take the lock, or raise a user error naming the process that holds it."""
        while self._fd is None:
            try:
                self.lock_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise write_error(self.path, error) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UserError(
                    f"{self.path} is being written by another gpicl-bench process (pid {owner}); "
                    "wait for it to finish, or write to another file"
                ) from None
            if not _same_file(fd, self.lock_path):  # its previous owner removed it while we waited: take the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.lock_path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
