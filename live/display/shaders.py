"""GLSL sources from the ``shaders`` package: finding, splitting into stages, explaining
compile errors. String code only; nothing here needs a GL context except ``build``.

Each program is one ``shaders/<name>.glsl`` file holding both stages, as in
moderngl-window's single-file programs::

    #version 330 core
    #if defined VERTEX_SHADER
    ...
    #elif defined FRAGMENT_SHADER
    ...
    #endif

``load`` inserts ``#define VERTEX_SHADER`` (or ``FRAGMENT_SHADER``, plus any extra
defines, which is how one file holds a program's variants: ``display`` with ``CROSSFADE``)
right after the ``#version`` line. That is the only preprocessing; ``#include``
is not supported and is refused with the file and line. Because the inserted lines shift
the numbering, ``explain`` maps the line numbers of a driver's compile log back to the
file and quotes the offending source line.

Sources are read with ``importlib.resources.files("shaders")``, so they are found from a
checkout, an editable install and a regular ``pip install .`` alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Mapping, Optional

PACKAGE = "shaders"
SUFFIX = ".glsl"
STAGES = {"vertex_shader": "VERTEX_SHADER", "fragment_shader": "FRAGMENT_SHADER"}

# Where compile logs put the line number, one pattern per driver family:
#   Mesa:             0:12(5): error: ...
#   NVIDIA:           0(12) : error C0000: ...
#   AMD, Intel, Apple: ERROR: 0:12: ...
_LOG_LINE = re.compile(
    r"^(?P<prefix>\s*(?:ERROR|WARNING):\s*)?(?P<string>\d+)"
    r"(?::(?P<colon>\d+)(?:\((?P<column>\d+)\))?|\((?P<paren>\d+)\))"
    r"\s*:?\s*(?P<rest>.*)$"
)
_DEFINE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ShaderError(ValueError):
    """A shader file is missing, malformed, or failed to compile or link; the message
    names the file (and the line, where the driver gave one)."""


@dataclass(frozen=True)
class ProgramSource:
    """One program's stage sources, ready for ``ctx.program(**source.stages)``."""

    name: str  # "display"
    file: str  # "display.glsl"
    text: str  # the file as read (newlines normalised)
    stages: Mapping[str, str] = field(repr=False)  # {"vertex_shader": ..., "fragment_shader": ...}
    version_line: int  # 1-based line of #version in the file
    inserted: int  # lines inserted after it in every stage

    def file_line(self, compiled_line: int) -> Optional[int]:
        """The file's line number for a line number in a compiled stage (None for a line
        that the preprocessing inserted)."""
        if compiled_line <= self.version_line:
            return compiled_line
        if compiled_line <= self.version_line + self.inserted:
            return None
        return compiled_line - self.inserted


def available() -> list[str]:
    """The names of every program in the shaders package, sorted."""
    root = resources.files(PACKAGE)
    return sorted(p.name[: -len(SUFFIX)] for p in root.iterdir() if p.name.endswith(SUFFIX))


def read(name: str) -> str:
    """The text of ``shaders/<name>.glsl``; a missing file lists the ones that exist."""
    path = resources.files(PACKAGE).joinpath(name + SUFFIX)
    if not path.is_file():
        raise ShaderError(
            f"shader {name + SUFFIX!r} not found in the {PACKAGE!r} package; "
            f"available: {', '.join(available()) or '(none)'}"
        )
    return path.read_text(encoding="utf-8")


def load(name: str, defines: Optional[Mapping[str, object]] = None) -> ProgramSource:
    """Read ``shaders/<name>.glsl`` and split it into its vertex and fragment stages."""
    return parse(read(name), name, defines)


def parse(text: str, name: str, defines: Optional[Mapping[str, object]] = None) -> ProgramSource:
    """Split one single-file program into stage sources (see the module docstring)."""
    file = f"{PACKAGE}/{name}{SUFFIX}"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")

    version = _version_line(lines, file)
    for number, line in enumerate(lines, start=1):
        if line.strip().startswith("#include"):
            raise ShaderError(f"{file}:{number}: #include is not supported; put the code in the file")
    for stage_define in STAGES.values():
        if not re.search(rf"\b{stage_define}\b", text):
            raise ShaderError(
                f"{file}: no {stage_define} section; a program file needs "
                f"'#if defined VERTEX_SHADER ... #elif defined FRAGMENT_SHADER ... #endif'"
            )

    extra = []
    for key, value in (defines or {}).items():
        if not _DEFINE_NAME.match(key) or key in STAGES.values():
            raise ShaderError(f"{file}: bad define name {key!r} (a C identifier other than the stage names)")
        extra.append(f"#define {key} {value}".rstrip())

    head, tail = lines[:version], lines[version:]
    stages = {
        stage: "\n".join(head + [f"#define {stage_define}"] + extra + tail)
        for stage, stage_define in STAGES.items()
    }
    return ProgramSource(
        name=name, file=file, text=text, stages=stages, version_line=version, inserted=1 + len(extra)
    )


def _version_line(lines: list[str], file: str) -> int:
    """The 1-based line of ``#version``, which GLSL requires before anything but comments."""
    in_block_comment = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if in_block_comment:
            if "*/" in stripped:
                in_block_comment = False
                stripped = stripped.split("*/", 1)[1].strip()
            else:
                continue
        if stripped.startswith("/*"):
            in_block_comment = "*/" not in stripped
            continue
        if not stripped or stripped.startswith("//"):
            continue
        if stripped.startswith("#version"):
            return number
        break
    raise ShaderError(f"{file}: the first line of code must be '#version ...' (e.g. '#version 330 core')")


def explain(source: ProgramSource, log: str, stage: Optional[str] = None) -> str:
    """A compile log rewritten as ``file:line: message`` lines, each followed by the
    source line it points at. Lines the pattern does not recognise are kept as they are."""
    file_lines = source.text.split("\n")
    out = []
    for raw in log.strip().splitlines():
        match = _LOG_LINE.match(raw)
        if not match:
            if raw.strip():
                out.append(raw.rstrip())
            continue
        compiled = int(match["colon"] or match["paren"])
        line = source.file_line(compiled)
        column = f":{match['column']}" if match["column"] else ""
        rest = match["rest"].strip()
        if line is None:
            out.append(f"{source.file}: (inserted preamble, compiled line {compiled}){column}: {rest}")
            continue
        out.append(f"{source.file}:{line}{column}: {rest}")
        if 1 <= line <= len(file_lines):
            out.append(f"    {line:4d} | {file_lines[line - 1].rstrip()}")
    where = f" ({stage.replace('_', ' ')})" if stage else ""
    return f"shader {source.file}{where} failed to compile:\n" + "\n".join(out)


def _failed_stage(message: str) -> Optional[str]:
    """Which stage a moderngl compile error is about (its message names it)."""
    for stage in STAGES:
        if stage in message:
            return stage
    return None


def build(ctx, name: str, defines: Optional[Mapping[str, object]] = None):
    """Compile and link ``shaders/<name>.glsl`` on a moderngl context. A compile or link
    failure raises ShaderError naming the file, with the log mapped to its lines."""
    import moderngl  # only here: everything else in this module is GL-free

    source = load(name, defines)
    try:
        return ctx.program(**source.stages)
    except moderngl.Error as exc:
        message = str(exc)
        if "Linker" in message or "link" in message.lower().split("\n", 1)[0]:
            raise ShaderError(f"shader {source.file} failed to link:\n{message.strip()}") from None
        raise ShaderError(explain(source, _compile_log(message), _failed_stage(message))) from None


def _compile_log(message: str) -> str:
    """The driver's log out of a moderngl compile error (moderngl prefixes a title and
    the stage name underlined with '=')."""
    lines = message.strip().splitlines()
    for i, line in enumerate(lines):
        if line and set(line.strip()) == {"="}:
            return "\n".join(lines[i + 1 :])
    return message
