"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The recipe: write to a temporary file in the *same directory* (so ``os.replace`` is a
rename within one file system, which POSIX makes atomic), flush and ``fsync`` it so
its bytes are on disk before the rename, then ``os.replace`` it over the target.
If anything fails, the temporary file is removed and the target is left untouched.
"""

import os
import tempfile
from pathlib import Path

# Mode of newly created files. mkstemp makes 0o600 files; checkpoints are meant to
# be shared like any file written with open(), so we use the usual 0o644.
_NEW_FILE_MODE = 0o644


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes-like) to ``path`` atomically.

    Args:
        path: destination file (str or Path). Its directory must exist.
        data: bytes, bytearray or memoryview.

    Returns:
        The destination as a ``pathlib.Path``.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    mode = path.stat().st_mode & 0o777 if path.exists() else _NEW_FILE_MODE
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    fsync_directory(directory)
    return path


def atomic_write_text(path, text, encoding="utf-8"):
    """Write the string ``text`` to ``path`` atomically (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding))


def fsync_directory(directory):
    """Flush the directory entry of the rename to disk (best effort; not on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
