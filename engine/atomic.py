"""Files that are either the old one or the new one, never half of one: ``replacing`` and
``write_atomically``.

Every file netbend writes that a user keeps (presets, takes, renders, CSVs, engines, ONNX
files, benchmark JSON, checkpoints) is written to a temp file in the same folder, flushed
to disk, and moved over the target with ``os.replace``, which is atomic on POSIX and on
Windows. A crash, a full disk or a kill -9 leaves the previous file (or none), and no
stray temp file once the writer's own exception has run its course.

    with replacing(out / "take.json") as tmp:       # any writer that wants a file name
        tmp.write_text(json.dumps(meta))
    write_atomically(path, text, mode=0o644)         # text or bytes in one call

The temp name keeps the target's suffix (``.x.wav.3f2a.tmp.wav``) so that writers which
choose a format from the file name (wave, ffmpeg, onnx) still see the right one.
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

__all__ = ["replacing", "temp_beside", "write_atomically", "fsync_folder"]


def temp_beside(path: Path) -> Path:
    """A fresh hidden name in ``path``'s folder that keeps its suffix."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    # read-write: Windows' fsync (_commit) refuses a descriptor opened read-only
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_written(path: Path) -> None:
    """fsync what the writer made: one file, or a folder's files and the folder itself."""
    if not path.is_dir():
        _fsync_file(path)
        return
    for item in sorted(path.rglob("*")):
        if item.is_file() and not item.is_symlink():
            _fsync_file(item)
    for folder in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
        fsync_folder(folder)
    fsync_folder(path)


def _remove_written(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def replacing(path: Union[str, os.PathLike], *, mode: Optional[int] = None,
              durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block ends cleanly, move it over ``path``.

    The block writes the temp file (or folder) by any means. On a clean exit the file is fsynced
    (``durable``), given ``mode`` if one is set, and replaces ``path``; then the folder is
    fsynced so the rename survives a power cut. On any exception the temp file is removed
    and ``path`` is untouched. The folder is made if needed. A folder replaces a folder
    whole: the old one is moved aside, never deleted before the new one is in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: the writer left no file to move into place")
        if durable:
            _fsync_written(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        old = _move_folder_aside(path) if tmp.is_dir() else None
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)  # the previous folder back in place
            raise
    except BaseException:
        _remove_written(tmp)
        raise
    if durable:
        fsync_folder(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _move_folder_aside(path: Path) -> Optional[Path]:
    """A folder cannot be renamed onto a folder that has files: rename the old one aside
    first (it is removed once the new one is in place, or put back if that fails)."""
    if not path.is_dir() or path.is_symlink():
        return None
    aside = temp_beside(path)
    os.replace(path, aside)
    return aside


def write_atomically(path: Union[str, os.PathLike], data: Union[str, bytes, bytearray, memoryview], *,
                     mode: Optional[int] = None, durable: bool = True) -> Path:
    """Write ``data`` (str as UTF-8, or any bytes-like buffer) to ``path`` atomically."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with replacing(path, mode=mode, durable=durable) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
    return path
