"""Small I/O helpers: atomic writes, user cache directory, hashing."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import hashlib
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_dir() -> Path:
    """recforge's cache root: ``$RECFORGE_CACHE`` or ``$XDG_CACHE_HOME/recforge``."""
    root = os.environ.get("RECFORGE_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "recforge"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path`` and rename it into place.

    Nothing half-written is ever visible at ``path``; on error the temporary file is removed.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder; give a file path to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_dead_temporaries(path)
    tmp = _fresh(path, lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS)


def _write_error(path: Path, exc: OSError) -> OSError:
    """A failed write (full disk, size limit, read-only filesystem; numpy's short write names no
    file) naming the output; any other error (a missing input read inside the block) as is."""
    detail = exc.strerror or str(exc)
    if exc.errno not in _FULL and "requested and" not in detail:
        return exc
    return OSError(exc.errno, f"cannot write {path}: {detail} (disk full or file size limit?)")


def temp_folder_for(folder: Path) -> Path:
    """A new empty temporary folder next to ``folder`` (same filesystem, so a rename moves it).

    Temporaries left by a process that no longer runs (killed mid-write) are deleted first.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep_dead_temporaries(folder)
    return _fresh(folder, lambda p: os.mkdir(p, 0o777))


def _fresh(path: Path, create: Callable[[Path], None]) -> Path:
    """A new temporary sibling of ``path`` made by ``create`` (exclusive; retried on a clash).

    Unlike ``tempfile``'s private 0600/0700 files, the modes follow the umask, as those of any
    file the user writes: a published bundle or CSV is as readable as its neighbours.
    """
    for _ in range(100):
        candidate = path.parent / f"{_temp_prefix(path)}{secrets.token_hex(4)}.tmp"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _temp_prefix(path: Path) -> str:
    """``.NAME.tmp-PID-``: hidden, and naming the process that writes it."""
    return f".{path.name}.tmp-{os.getpid()}-"


def _sweep_dead_temporaries(path: Path) -> None:
    """Delete the temporaries of ``path`` whose writing process is gone (killed, crashed).

    A temporary of a live process (another run writing now) is left alone; a process id reused
    since only means a leftover waits for a later sweep.
    """
    prefix = f".{path.name}.tmp-"
    for entry in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no signal-0 probe (Windows' os.kill terminates): never sweep there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def replace_folder(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` to ``folder``, replacing an existing one.

    On Linux the two folders are swapped by one ``renameat2(RENAME_EXCHANGE)``, so at every
    instant ``folder`` is either the complete old folder or the complete new one, even if the
    process is killed (the old copy, then under ``tmp``'s name, is deleted afterwards).
    Elsewhere the old folder is renamed aside first and deleted after: ``folder`` is then
    missing between two renames, never while a large tree is being deleted.
    """
    folder = Path(folder)
    if folder.exists() and _exchange(Path(tmp), folder):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = None
    if folder.exists():
        old = temp_folder_for(folder)
        os.replace(folder, old / folder.name)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap paths ``a`` and ``b`` (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # no libc symbol (musl before 1.2.?, old glibc)
        return False
    c = ctypes
    renameat2.argtypes = [c.c_int, c.c_char_p, c.c_int, c.c_char_p, c.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False  # a filesystem or kernel without exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Write a folder atomically: fill the yielded temporary folder; on success it replaces
    ``folder``, on error it is deleted and ``folder`` is left as it was."""
    tmp = temp_folder_for(folder)
    try:
        yield tmp
        replace_folder(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(Path(folder), exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
