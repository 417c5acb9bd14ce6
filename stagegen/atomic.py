"""Atomic file writes, shared by the CLI (generated modules) and the decorator's cache."""

from __future__ import annotations

import os


def write_atomically(path, text: str) -> None:
    """Write beside the target and rename over it, so a reader never sees half a file.

    The file gets the permissions a plain ``open(path, "w")`` would give it (the old file's,
    or the umask's), not the owner-only ones of the temporary file."""
    import tempfile

    path = os.fspath(path)
    folder, name = os.path.split(path)
    fd, temporary = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _mode_for(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
