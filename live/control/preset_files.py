"""Preset files: where presets are found, and how their text is read and written.

Presets are found in the user folder first ($NETBEND_PRESETS, else
~/.config/netbend/presets), then among the presets shipped in the ``presets`` package. A
name finds NAME.toml there, first match wins; an existing path is taken as it is.
Reading gives the file's TOML table (a syntax error names the line and column); writing
is atomic (temp file, fsync, rename), so a crash leaves the old file or the new one.

What a preset may contain, and loading, checking and saving a ``Preset``, are in
live/control/presets.py. ``PresetError`` is here because both
halves raise it and this one must not import that one.
"""
from __future__ import annotations

import os
import re
import tempfile
import tomllib
from importlib import resources
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "PresetError", "find_preset", "list_presets", "preset_dirs", "preset_files_in", "read_toml",
    "shipped_preset_dir", "user_preset_dirs", "user_preset_path", "write_atomically",
]


class PresetError(ValueError):
    """A preset that cannot be used. ``str()`` reads ``<file>: <key path>: <what is wrong>``,
    leaving out the parts that do not apply."""

    def __init__(self, source: Optional[str], key: Optional[str], problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(": ".join(part for part in (source, key, problem) if part))

    def at(self, source: str) -> "PresetError":
        """The same error, reported against ``source`` (a file) instead."""
        return PresetError(source, self.key, self.problem)


# -- where presets are --------------------------------------------------------------------


def user_preset_dirs() -> list[Path]:
    """$NETBEND_PRESETS (one folder, or several joined by os.pathsep), else
    $XDG_CONFIG_HOME/netbend/presets (~/.config/netbend/presets)."""
    env = os.environ.get("NETBEND_PRESETS", "").strip()
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    config = os.environ.get("XDG_CONFIG_HOME", "").strip() or Path.home() / ".config"
    return [Path(config).expanduser() / "netbend" / "presets"]


def shipped_preset_dir() -> Path:
    """The ``presets`` package folder: the checkout's under ``pip install -e .``, the
    installed copy under ``pip install .``."""
    return Path(os.fspath(resources.files("presets")))


def preset_dirs() -> list[Path]:
    """Where presets are looked for, first match wins: the user folder, then the shipped one."""
    return user_preset_dirs() + [shipped_preset_dir()]


def user_preset_path(name: str) -> Path:
    """Where a preset saved by name goes: NAME.toml in the (first) user folder."""
    if not isinstance(name, str) or not name.strip() or name.startswith(".") or any(
            sep and sep in name for sep in (os.sep, os.altsep)):
        raise PresetError(None, None, f"bad preset name {name!r}: use a plain file name without folders")
    stem = name[:-5] if name.endswith(".toml") else name
    return user_preset_dirs()[0] / f"{stem}.toml"


def preset_files_in(folder: Path) -> list[Path]:
    """The .toml files in ``folder``, sorted; none if it is not a folder."""
    return sorted(p for p in folder.glob("*.toml") if p.is_file()) if folder.is_dir() else []


def list_presets() -> list[tuple[str, Path]]:
    """(name, path) of every preset by file name, a user preset hiding a shipped one of the
    same name; sorted by name."""
    found: dict[str, Path] = {}
    for folder in preset_dirs():
        for path in preset_files_in(folder):
            found.setdefault(path.stem, path)
    return sorted(found.items())


def find_preset(name_or_path: Union[str, Path]) -> Path:
    """An existing file wins; else NAME.toml in ``preset_dirs()``, first match."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise PresetError(text, None, "is a folder, not a preset file")
    has_folder = any(sep and sep in text for sep in (os.sep, os.altsep))
    if has_folder or isinstance(name_or_path, Path):
        raise PresetError(text, None, "no such preset file")
    name = text[:-5] if text.endswith(".toml") else text
    for folder in preset_dirs():
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return candidate
    names = [n for n, _ in list_presets()]
    raise PresetError(None, None, f"unknown preset {name!r}; available: {', '.join(names) or 'none'} "
                                  f"(looked in {', '.join(str(d) for d in preset_dirs())}), "
                                  "or give a path to a .toml file")


# -- reading and writing ------------------------------------------------------------------


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def read_toml(path: Path) -> dict:
    """The TOML table in ``path``; PresetError naming the file (and the line and column of a
    syntax error) if it cannot be read or parsed."""
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise PresetError(source, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise PresetError(source, None, f"not UTF-8 text (byte {e.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        where = _TOML_POSITION.search(message)
        if where:
            position = f"line {where.group(1)}, column {where.group(2)}"
            raise PresetError(source, position, f"TOML syntax error: {message[:where.start()]}") from None
        raise PresetError(source, None, f"TOML syntax error: {message}") from None


def write_atomically(path: Path, text: str, mode: int) -> None:
    """Write ``text`` (UTF-8) to ``path`` with permissions ``mode``: a temp file in the same
    folder, fsync, then ``os.replace``, so a crash leaves either the old file or the new
    one, never half of one. Makes the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
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
