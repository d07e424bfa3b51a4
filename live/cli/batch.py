"""Several renders in one `netbend render` call: several audio files, or a batch file.

    netbend render a.wav b.wav -o renders/ --preset paper-piano-mesh [--ray]
    netbend render --jobs album.toml [--ray]

With several audio files, ``-o`` is a folder and each file renders to ``<stem>.mp4`` in it
(and, with ``--frames-dir``, into ``<frames-dir>/<stem>/``). A batch file lists one job per
``[[render]]`` table; what a job leaves out comes from the command line, and its relative
paths are read from the batch file's folder:

    [[render]]
    audio = "tracks/01.wav"
    output = "out/01.mp4"
    preset = "paper-piano-mesh"
    seconds = "0:30"

    [[render]]
    take = "takes/rehearsal-3"
    output = "out/rehearsal-3.mp4"
"""
from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

from live.cli.render import RenderError, RenderJob, parse_frame_size, parse_span

# key -> how its value becomes a RenderJob field (None: a path, relative to the batch file)
KEYS = {
    "audio": None, "output": None, "frames_dir": None, "take": None,
    "preset": str, "model": str, "fps": float, "steps": int, "backend": str,
    "size": parse_frame_size, "seconds": parse_span,
}
FIELDS = {"seconds": "span"}


def jobs_for_files(files: list[Path], base: RenderJob) -> list[RenderJob]:
    """One job per audio file, writing ``<stem>.mp4`` into the folder ``base.output``."""
    folder = Path(base.output)
    if folder.suffix.lower() == ".mp4" or not folder.is_dir():
        raise RenderError(f"with {len(files)} audio files, -o names an existing folder for their videos "
                          f"(<name>.mp4 each), not {str(folder)!r}")
    stems = [Path(f).stem for f in files]
    if len(set(stems)) != len(stems):
        raise RenderError(f"two audio files share a name ({', '.join(sorted(stems))}); their videos would "
                          "collide in one folder: use a --jobs file")
    return [replace(base, audio=Path(f), output=folder / f"{stem}.mp4",
                    frames_dir=Path(base.frames_dir) / stem if base.frames_dir else None)
            for f, stem in zip(files, stems)]


def load_batch(path: Path, base: RenderJob) -> list[RenderJob]:
    """The jobs of a batch file, each ``base`` with the table's keys set."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RenderError(f"--jobs {str(path)!r}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RenderError(f"--jobs {str(path)!r} is not valid TOML: {e}") from None
    extra = sorted(set(data) - {"render"})
    tables = data.get("render")
    if extra or not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise RenderError(f"{path}: write one [[render]] table per job" +
                          (f" (unknown top-level keys: {', '.join(extra)})" if extra else ""))
    jobs = []
    for n, table in enumerate(tables, 1):
        where = f"{path}: render {n}"
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise RenderError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
        if "output" not in table:
            raise RenderError(f"{where}: needs output = \"NAME.mp4\"")
        if "audio" in table and "take" in table:
            raise RenderError(f"{where}: give audio or take, not both")
        changes = {}
        for key, value in table.items():
            convert = KEYS[key]
            expected = str if convert in (None, str, parse_frame_size, parse_span) else (int, float)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise RenderError(f"{where}: {key} = {value!r} should be a {'string' if expected is str else 'number'}")
            changes[FIELDS.get(key, key)] = path.parent / value if convert is None else convert(value)
        if "take" in table:
            changes["audio"] = None  # a take renders with its own audio, whatever the command line gave
        job = replace(base, **changes)
        if base.frames_dir is not None and "frames_dir" not in table:  # one --frames-dir: a folder per job
            job = replace(job, frames_dir=Path(base.frames_dir) / Path(job.output).stem)
        jobs.append(job)
    check_distinct(jobs)
    return jobs


def check_distinct(jobs: list[RenderJob]) -> None:
    """Two jobs of one call never write the same video or frames folder."""
    for what, paths in (("output", [j.output for j in jobs]),
                        ("frames folder", [j.frames_dir for j in jobs if j.frames_dir is not None])):
        resolved = [Path(p).resolve() for p in paths]
        for p in resolved:
            if resolved.count(p) > 1:
                raise RenderError(f"two renders of this call have the same {what} {str(p)!r}; give each its own")
