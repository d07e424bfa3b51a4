"""Preset files: where presets are found, and how their text is read and written.

Presets are found in the user folder first ($NETBEND_PRESETS, else
~/.config/netbend/presets), then among the presets shipped in the ``presets`` package. A
name finds NAME.toml there, first match wins; an existing path is taken as it is.
Reading gives the file's TOML table (a syntax error names the line and column), once the
text passed bounds that keep tomllib fast. Writing is engine/atomic.py's (temp file, fsync,
rename), so a crash leaves the old file or the new one.

What a preset may contain, and loading, checking and saving a ``Preset``, are in
live/control/presets.py. ``PresetError`` is here because both
halves raise it and this one must not import that one.
"""
from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "PresetError", "find_preset", "list_presets", "preset_dirs", "preset_files_in", "read_toml",
    "shipped_preset_dir", "user_preset_dirs", "user_preset_path",
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
    """Where a preset saved by name goes: NAME.toml in the (first) user folder. The name of a
    shipped preset is refused: a user file of that name would silently shadow it."""
    if not isinstance(name, str) or not name.strip() or name.startswith(".") or any(
            sep and sep in name for sep in (os.sep, os.altsep)):
        raise PresetError(None, None, f"bad preset name {name!r}: use a plain file name without folders")
    stem = name[:-5] if name.endswith(".toml") else name
    if (shipped_preset_dir() / f"{stem}.toml").is_file():
        raise PresetError(None, None, f"{stem!r} is a preset shipped with netbend; saving under its name would hide "
                                      "it from every later show: choose another name")
    return user_preset_dirs()[0] / f"{stem}.toml"


def preset_files_in(folder: Path) -> list[Path]:
    """The .toml files in ``folder``, sorted; none if it is not a folder. Hidden files are
    not presets: a save cut short leaves its temp file (``.x.toml.3f2a.tmp.toml``) there."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.toml") if p.is_file() and not p.name.startswith("."))


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

# Bounds on what reaches tomllib. A preset is a few KB; tomllib's cost grows with the square
# of a dotted key's parts (a 30 KB ``a.a.a… = 1`` took 1.5 GB) and it recurses per nested
# array (1000 deep: RecursionError), so these are checked on the text first.
MAX_PRESET_BYTES = 256 * 1024
MAX_DEPTH = 16        # arrays / inline tables inside each other
MAX_KEY_PARTS = 16    # a.b.c… in one key or table header
MAX_TOKEN = 256       # characters of a bare key or a literal outside strings
MAX_NUMBER = 40       # characters of a number literal (Python refuses > 4300 digits anyway)


def check_toml_bounds(text: str, source: str) -> None:
    """PresetError (naming the line) when ``text`` passes the bounds above; else None.

    A small scanner that skips strings ("…", '…', and their triple-quoted forms) and
    comments, and looks at what is left: bracket depth, dots per key, token lengths.
    """
    if len(text) > MAX_PRESET_BYTES:
        raise PresetError(source, None, f"{len(text)} characters; a preset may have at most {MAX_PRESET_BYTES}")
    depth = dots = token = line = 0
    i, n = 0, len(text)
    token_start = 0

    def fail(problem: str) -> None:
        raise PresetError(source, f"line {line + 1}", problem)

    while i < n:
        ch = text[i]
        if ch in "\"'":
            i, line = _after_string(text, i, line)
            token = 0
            continue
        if ch == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                fail(f"arrays or tables nested more than {MAX_DEPTH} deep")
            dots = token = 0
        elif ch in "]}":
            depth = max(0, depth - 1)
            dots = token = 0
        elif ch in "=,\n":
            dots = token = 0
            line += ch == "\n"
        elif ch == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                fail(f"a key with more than {MAX_KEY_PARTS} dotted parts")
            token += 1
        elif ch in " \t\r":
            if token:
                _check_token(text[token_start:i], fail)
            token = 0
        else:
            if not token:
                token_start = i
            token += 1
            if token > MAX_TOKEN:
                _check_token(text[token_start:i + 1], fail)
                fail(f"a key or value longer than {MAX_TOKEN} characters (quote long text)")
        i += 1
        if token and (i >= n or text[i] in " \t\r\n=,[]{}#"):
            _check_token(text[token_start:i], fail)
            token = 0


def _after_string(text: str, i: int, line: int) -> tuple[int, int]:
    """(index after the string that starts at ``i``, the line count there). A one-line
    string cut off by its line's end stops there: tomllib then says where."""
    n = len(text)
    quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else text[i]
    i += len(quote)
    while i < n and not text.startswith(quote, i):
        if text[i] == "\\" and quote[0] == '"':
            i += 1
        elif text[i] == "\n":
            if len(quote) == 1:
                break
            line += 1
        i += 1
    return i + len(quote), line


def _check_token(token: str, fail) -> None:
    if len(token) > MAX_NUMBER and token.lstrip("+-")[:1].isdigit() and \
            all(c.isdigit() or c in "+-_.eE" for c in token):
        fail(f"a number longer than {MAX_NUMBER} characters")


def read_toml(path: Path) -> dict:
    """The TOML table in ``path``; PresetError naming the file (and the line and column of a
    syntax error) if it cannot be read or parsed."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PRESET_BYTES + 1)  # never the whole of a huge (or endless) file
        if len(data) > MAX_PRESET_BYTES:
            raise PresetError(source, None, f"larger than {MAX_PRESET_BYTES} bytes; a preset is a few KB of TOML")
        text = data.decode("utf-8-sig")
    except OSError as e:
        raise PresetError(source, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise PresetError(source, None, f"not UTF-8 text (byte {e.start})") from None
    check_toml_bounds(text, source)
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as e:  # int() of a huge literal raises a bare ValueError
        if not isinstance(e, tomllib.TOMLDecodeError):
            raise PresetError(source, None, f"cannot be read as TOML: {str(e)[:200]}") from None
        message = str(e)
        where = _TOML_POSITION.search(message)
        if where:
            position = f"line {where.group(1)}, column {where.group(2)}"
            raise PresetError(source, position, f"TOML syntax error: {message[:where.start()]}") from None
        raise PresetError(source, None, f"TOML syntax error: {message}") from None
