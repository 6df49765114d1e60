"""Output files that appear whole or not at all, and input and output paths checked before any work starts.

A file is written to a temporary beside its target (``.NAME.PID.tmp``), flushed to disk and renamed over the target
in one ``os.replace``: a kill, a full disk or an error at any moment leaves the old target (or none) and never a
partial one. Temporaries a killed process left behind are removed by :func:`clean_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from gpicl_bench.errors import UserError


def temporary_for(path: Path) -> Path:
    """The temporary that :func:`replacing` writes before it becomes ``path``."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def clean_stale_temporaries(path: Path) -> None:
    """Remove temporaries of ``path`` whose writing process no longer runs (killed before its rename)."""
    for temporary in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temporary.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and not _running(int(pid)):
            temporary.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(path: Path, what: str = "output") -> None:
    """Refuse, before any work, an output path that cannot be written: a folder, or a location under a file or a
    folder without write permission. Folders that do not exist yet are fine (they are created when writing)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            raise UserError(f"cannot write {what} {path}: {parent} cannot be created")
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {path}: no permission to write in {parent}")


def existing_file(path: Path, what: str) -> Path:
    """``path``, refused before any work unless it is an existing file (``what`` names it in the error)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such {what}: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a {what}")
    return path


def check_free_space(path: Path, needed: int, what: str) -> None:
    """Refuse, before any work, to write about ``needed`` bytes beside ``path`` on a disk that has less free."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UserError(f"{what} needs about {_megabytes(needed)} free beside {path}; {folder} has {_megabytes(free)}")


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def write_error(path: Path, error: OSError) -> UserError:
    """A one-line error for a failed write (full disk, permissions, a vanished folder), naming the target."""
    return UserError(f"cannot write {path}: {error.strerror or error}; nothing was changed there")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path to write; if the block succeeds it is synced and renamed to ``path`` atomically. An
    ``OSError`` (e.g. a full disk) becomes a one-line user error, and ``path`` keeps its old content."""
    path = Path(path)
    temporary = temporary_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
