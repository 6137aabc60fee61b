"""Safe file output: a failed, interrupted or concurrent run never damages a file.

- :func:`atomic_path`: write to a temporary file beside the target, fsync, rename.
  Readers see the old file or the new one, never a partial one, even after a crash.
- :func:`exclusive`: an advisory lock so two processes cannot write one output.
- :func:`remove_stale_temps`: the temporary files a ``kill -9`` left, removed under the lock.
- :func:`write_json` / :func:`read_json`: JSON that can carry a checksum of its content,
  so a bit flip is detected on load, and that fails to load with a clear error.
- :func:`file_sha256`: a file's SHA-256, streamed (a 2 GB split never sits in memory).
- :func:`usual_mode`: the mode ``open()`` and ``mkdir()`` would give, for files that
  libraries wrote owner-only (safetensors writes 0600), so shared directories stay
  readable.

Every file the tool writes gets the mode the umask gives a new file (0644 under the
usual umask 022) and every directory the mode it gives a new directory (0755): never
owner-only, whatever wrote it (``mkstemp``, ``mkdtemp`` and safetensors' ``save_file``
make 0600 / 0700).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lingcollapse import faults
from lingcollapse.errors import UserError, first_line

CHECKSUM = "content_sha256"  # the key of a JSON object's checksum of its other keys


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    The temporary file lives in the same directory so the final ``os.replace`` is
    atomic (same file system). On any exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    make_parent(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a directory; give a file path")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        usual_mode(tmp)  # mkstemp makes 0600
        fsync(tmp)
        faults.point(f"write:{path}")
        os.replace(tmp, path)
        fsync(path.parent)  # the rename itself survives a power cut
        faults.point(f"wrote:{path}")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_parent(path: Path) -> None:
    """Create ``path``'s directory; one on the way being a file is a :class:`UserError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise UserError(
            f"cannot write {path}: {blocker} is a file, not a directory; pick another path"
        ) from None


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Remove the temporary files of :func:`atomic_path` for ``path`` that killed runs
    left (``kill -9`` skips every clean-up; a checkpoint's can be gigabytes). Only for a
    caller that holds the lock guarding ``path``: no other writer can be using them."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.????????.tmp"):  # mkstemp's
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_mode(path: str | os.PathLike) -> None:
    """Give ``path``, and everything under it when it is a directory, the mode a new file
    (``0o666``) or directory (``0o777``) gets under the process's umask: what ``open()``
    and ``mkdir()`` would have made. For output written through ``mkstemp``/``mkdtemp``
    or safetensors (0600/0700, unreadable to the group of a shared cluster directory).
    Links are left alone (``chmod`` would follow them out of the output)."""
    mask = _umask()
    path = Path(path)
    for p in [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file, or a directory's entries (a rename in it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str = "output") -> Iterator[None]:
    """Hold an advisory lock on ``path`` (via a hidden ``.NAME.lock`` beside it) or refuse.

    Two processes writing one output (two sweeps into one dir, a command started twice)
    would corrupt it; the second gets a :class:`UserError` instead.
    """
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    make_parent(lock)
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another process is writing {what} {path} (it holds {lock}); wait for it "
                "to finish or write elsewhere"
            ) from None
        try:
            yield
        finally:  # the lock file stays: unlinking it would let two lockers race
            fcntl.flock(handle, fcntl.LOCK_UN)


def discard_dir(path: str | os.PathLike) -> None:
    """Delete a directory without ever leaving it half deleted under its own name: it is
    renamed out of the way first (atomic), then removed (a kill mid-delete leaves only a
    hidden ``.NAME.deleted.tmp``, which the next delete of the same name clears)."""
    path = Path(path)
    trash = path.with_name(f".{path.name}.deleted.tmp")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def strict(obj: Any) -> Any:
    """``obj`` with every NaN and ±Inf float replaced by None, at any depth: JSON has no
    such numbers (``NaN`` in a file is Python's extension, which strict parsers refuse)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def to_json(obj: Any, **kwargs) -> str:
    """Strict JSON text of ``obj`` (NaN and ±Inf as null), for files and stdout alike."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, obj: Any, checksum: bool = False) -> None:
    """Write ``obj`` atomically as strict JSON; with ``checksum``, a dict gains a last key
    ``content_sha256`` over its other keys (see :func:`read_json`)."""
    obj = strict(obj)
    if checksum:
        body = {k: v for k, v in obj.items() if k != CHECKSUM}
        obj = {**body, CHECKSUM: _json_sha256(body)}
    write_text(path, to_json(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike, remedy: str) -> Any:
    """Load a JSON file; a truncated, garbled or (where it records its ``content_sha256``)
    bit-flipped one is a :class:`UserError` naming the file and ``remedy``, the fix."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        raise UserError(f"cannot read {path} ({first_line(err)}): {remedy}") from None
    if isinstance(data, dict) and CHECKSUM in data:
        body = {k: v for k, v in data.items() if k != CHECKSUM}
        if _json_sha256(body) != data[CHECKSUM]:
            raise UserError(
                f"{path} is corrupt: its contents do not match the checksum it records "
                f"(a flipped bit or a broken copy): {remedy}"
            )
    return data


def _json_sha256(obj: dict) -> str:
    """Of a canonical text: key order and whitespace do not matter, every value does
    (floats round-trip exactly through their repr)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | os.PathLike, block: int = 1 << 24) -> str:
    """SHA-256 of a file's bytes, read in 16 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def read_csv(path: str | os.PathLike):
    """A CSV as a pandas DataFrame whose floats are the ones written: before pandas 3
    the default parser may miss the last digit of a 17-digit float (``round_trip`` never;
    pandas 3 parses so by default and deprecates the option)."""
    import pandas as pd  # slow to import: only where a table is read

    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, **exact)
