"""The server's private temporary folder: every upload and every result lives there, under a name
the server chose, never one the client sent.

The folder is made by `tempfile.mkdtemp` (mode 0700: only this user can list or read it). Each file
has a role ("photo", "kernel", "result.png", ...); a new file of a role replaces (removes) the
previous one, and `close` removes the folder with everything in it (the server calls it at shutdown).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath

_ROLE = re.compile(r"^[a-z][a-z0-9.-]*$")
_SUFFIX = re.compile(r"^(\.[a-z0-9]{1,8})?$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def display_name(client_name, default: str = "photo.png") -> str:
    """The last part of a file name a client sent, for messages and the command line only (never
    opened): folders (POSIX or Windows) and control characters dropped, at most 120 characters.

    >>> display_name("../../etc/passwd"), display_name("C:\\\\Users\\\\me\\\\IMG 1.JPG"), display_name("")
    ('passwd', 'IMG 1.JPG', 'photo.png')
    """
    name = _UNSAFE.sub("", str(client_name or ""))
    name = PureWindowsPath(PurePosixPath(name).name).name.strip()
    if name in ("", ".", ".."):
        return default
    return name[-120:]


class Workspace:
    """A private temporary folder (mode 0700) holding one file per role.

    >>> workspace = Workspace()
    >>> path = workspace.path("photo", ".png")
    >>> _ = path.write_bytes(b"data")
    >>> oct(workspace.folder.stat().st_mode & 0o777), workspace.path("photo", ".jpg").name
    ('0o700', 'photo.jpg')
    >>> path.exists()  # replaced: removed
    False
    >>> workspace.close(); workspace.folder.exists()
    False
    """

    def __init__(self, parent: str | os.PathLike | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="pydeblur-ui-", dir=parent))
        os.chmod(self.folder, 0o700)  # mkdtemp's mode already; said again for a reader's sake
        self._files: dict[str, Path] = {}

    def path(self, role: str, suffix: str = "") -> Path:
        """Where the new file of `role` goes (`role` + `suffix` in the folder); the previous file of
        that role is removed first.

        >>> workspace = Workspace()
        >>> workspace.path("kernel", ".npy").name
        'kernel.npy'
        >>> workspace.close()
        """
        if not _ROLE.match(role) or not _SUFFIX.match(suffix):
            raise ValueError(f"role and suffix must be plain names, got {role!r}, {suffix!r}")
        self.discard(role)
        if not self.folder.is_dir():
            raise RuntimeError(f"the workspace {self.folder} is closed")
        path = self.folder / f"{role}{suffix}"
        self._files[role] = path
        return path

    def discard(self, role: str) -> None:
        """Remove the file of `role`, if any.

        >>> workspace = Workspace()
        >>> workspace.path("result.png").touch()
        >>> workspace.discard("result.png"); list(workspace.folder.iterdir())
        []
        >>> workspace.close()
        """
        path = self._files.pop(role, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        """Remove the folder and every file in it (again: nothing).

        >>> workspace = Workspace(); workspace.close(); workspace.close()
        >>> workspace.folder.exists()
        False
        """
        self._files.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
