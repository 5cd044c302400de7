"""Writing files so that a reader (or a kill) never sees half of one: the one helper every writer uses.

A file is written under a hidden temporary name in its own folder, flushed to disk, given the mode it
should have, and renamed over the target in one step. The temporary name ends in `PARTIAL_SUFFIX`
(never an image or kernel suffix, so no input scan picks one up) and carries the writer's process id,
so that `remove_leftovers` can tell a dead writer's leftover from a live writer's file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

PARTIAL_SUFFIX = ".pydeblur-partial"
_LEFTOVER = re.compile(r"^\..+\.(\d+)" + re.escape(PARTIAL_SUFFIX) + "$")


def partial_name(path: Path) -> Path:
    """The temporary name `path` is written under: `.NAME.PID.pydeblur-partial` beside it.

    >>> partial_name(Path("out/sharp.png")) == Path(f"out/.sharp.png.{os.getpid()}.pydeblur-partial")
    True
    """
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def _mode_for(path: Path) -> int:
    """A replaced file keeps its permission bits; a new one gets 0666 less the umask, as `cp` does."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on success it replaces `path`.

    On an exception the temporary file is removed and `path` is left as it was.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "note.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("whole")
    >>> target.read_text()
    'whole'
    """
    path = Path(path)
    tmp = partial_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "data.bin"
    >>> write_bytes(target, b"whole")
    >>> target.read_bytes()
    b'whole'
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_path`).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "note.txt"
    >>> write_text(target, "whole")
    >>> target.read_text()
    'whole'
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically, in the format its suffix names, and close it.

    >>> import tempfile
    >>> from matplotlib.figure import Figure
    >>> target = Path(tempfile.mkdtemp()) / "plot.png"
    >>> save_figure(Figure(figsize=(1, 1)), target)
    >>> target.read_bytes()[1:4]
    b'PNG'
    """
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    plt.close(fig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers left in `folder`; return what was removed.

    Files of writers still running (another rank of the same run, say) are kept.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / f".a.png.999999999{PARTIAL_SUFFIX}").touch()  # no such process: a leftover
    >>> partial_name(folder / "b.png").touch()  # this process's: kept
    >>> [p.name for p in remove_leftovers(folder)], len(list(folder.iterdir()))
    (['.a.png.999999999.pydeblur-partial'], 1)
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and entry.is_file() and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            removed.append(entry)
    return removed


def check_writable(folder: str | os.PathLike) -> None:
    """Create `folder` if needed and prove a file can be written there, before any long computation.

    Raises OSError naming the folder (a read-only folder, a file in the way, no space for a name).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "new" / "outputs"
    >>> check_writable(folder)
    >>> folder.is_dir(), list(folder.iterdir())
    (True, [])
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = partial_name(folder / "write-probe")
        probe.touch()
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OSError(f"cannot write into the folder {folder}: {reason}") from error
