"""Presets: a whole look — model, pipeline settings, bends and their audio mappings — as a
human-editable TOML file.

    name = "paper-piano-mesh"
    description = "What it looks like and what drives it."
    pipeline = "walk"                 # stream | walk | chain

    [model]                           # name: tiny, sd-turbo, sd-1.5, a repo id, a path
    name = "sd-1.5"                   # vae: default | full | taesd | a path
    vae = "full"                      # width, height: optional, default the native size

    [walk]                            # named after the pipeline: fields of WalkConfig
    prompt = "3D mesh geometry"
    steps = 50

    [features]                        # optional: how audio features are taken
    taper = "hann"                    # hann (default) | none (the paper's rectangular window)

    [[bends]]                         # fields of engine.bends.Bend, in order of application
    operator = "R1"
    layer = "latent@40"               # the paper's layer 40; U-Net points: unet:N or a name

      [bends.mapping]                 # optional: fields of engine.mappings.Mapping
      feature = "rms"
      in_range = [0.0, 0.5]
      out_range = [0.0, 6.283185307179586]

A preset is data merged onto the dataclass defaults, never executed: every key is checked
when the file is read, and a bad one raises ``PresetError`` naming the file, the key path
and what is allowed::

    presets/x.toml: bends[1].operator: unknown operator 'rotat'; valid operators: ...

Layers are checked only for their form here ("latent@N", "latent", "unet:N", a point name;
a bare number is refused with both spellings, see engine.bends.parse_layer):
whether ``up.2.attentions.1`` exists depends on the model, so the pipeline's ``Bender``
checks names against the loaded U-Net when the preset is applied.

Presets are found in the user folder first ($NETBEND_PRESETS, else
~/.config/netbend/presets), then among the presets shipped in the ``presets`` package.
Saving is atomic (temp file, fsync, rename) and never overwrites a file that does not
parse as a preset; it writes plain TOML, so comments in a hand-edited file are not kept.
Here: ``Preset``, and loading, checking and saving presets. The checks of each raw key are
live/control/preset_checks.py; finding, listing and reading the files (and
``PresetError``) is live/control/preset_files.py; the atomic write is engine/atomic.py.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import tomli_w

from engine.atomic import write_atomically
from engine.bends import Bend
from engine.features import TAPERS
from engine.mappings import Mapping
from engine.pipelines import PIPELINES, Config
from live.control.arguments import CommandError
from live.control.preset_checks import SIZE_KEYS, checked_settings, expect, join, merged, preset_kwargs
from live.control.preset_files import PresetError, find_preset, list_presets, preset_dirs, preset_files_in, read_toml
from live.control.state import state_from_preset

__all__ = ["Preset", "check_presets", "load_named_preset", "load_preset", "load_preset_model", "preset_state",
           "save_preset"]


@dataclass
class Preset:
    """A whole look. Validated when made (PresetError); ``config()`` builds the pipeline's
    config. Bend layers are checked for form only: the pipeline's ``Bender`` checks them
    against the loaded model's U-Net."""

    name: str
    pipeline: str = "stream"
    description: str = ""
    model: str = "sd-turbo"
    vae: str = "default"
    width: Optional[int] = None  # None: the model's native size
    height: Optional[int] = None
    settings: dict = field(default_factory=dict)  # the pipeline table: fields of its config
    bends: list = field(default_factory=list)  # list[Bend], applied in order
    mappings: list = field(default_factory=list)  # list[Mapping | None], aligned with bends
    taper: str = "hann"  # [features] taper: the analysis window (none = the paper's rectangular one)
    overrides: dict = field(default_factory=dict)  # [on.<model>]: partial presets merged on for that model

    def __post_init__(self) -> None:
        try:
            self._validate()
        except PresetError as e:
            raise e.at(f"preset {self.name!r}") from None

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise PresetError(None, "name", f"must be a non-empty string (got {self.name!r})")
        expect(self.description, str, "description")
        if self.pipeline not in PIPELINES:
            raise PresetError(None, "pipeline", f"unknown pipeline (got {self.pipeline!r}); allowed: {join(PIPELINES)}")
        for key, value in (("model.name", self.model), ("model.vae", self.vae)):
            if not isinstance(value, str) or not value.strip():
                raise PresetError(None, key, f"must be a non-empty string (got {value!r})")
        for key in SIZE_KEYS:
            value = getattr(self, key)
            if value is not None:
                expect(value, int, f"model.{key}")
        if self.taper not in TAPERS:
            raise PresetError(None, "features.taper", f"unknown taper {self.taper!r}; allowed: {join(TAPERS)}")
        self.settings = checked_settings(self.pipeline, dict(self.settings), self.width, self.height)
        self.bends, self.mappings = list(self.bends), list(self.mappings)
        for i, bend in enumerate(self.bends):
            if not isinstance(bend, Bend):
                raise PresetError(None, f"bends[{i}]", f"must be a Bend (got {bend!r})")
        if len(self.mappings) > len(self.bends):
            raise PresetError(None, "mappings", f"{len(self.mappings)} mappings for {len(self.bends)} bends")
        self.mappings += [None] * (len(self.bends) - len(self.mappings))
        for i, mapping in enumerate(self.mappings):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise PresetError(None, f"bends[{i}].mapping", f"must be a Mapping or None (got {mapping!r})")

    def _config_with(self, settings: dict) -> Config:
        return PIPELINES[self.pipeline][1](**settings, width=self.width, height=self.height)

    def config(self) -> Config:
        """A fresh StreamConfig / WalkConfig / ChainConfig: the defaults, the pipeline table
        and the model's width/height."""
        return self._config_with(self.settings)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in the file's layout (what ``save_preset`` writes)."""
        model: dict[str, Any] = {"name": self.model, "vae": self.vae}
        model.update({k: getattr(self, k) for k in SIZE_KEYS if getattr(self, k) is not None})
        d: dict[str, Any] = {"name": self.name, "description": self.description, "pipeline": self.pipeline,
                             "model": model, self.pipeline: dict(self.settings)}
        bends = []
        for bend, mapping in zip(self.bends, self.mappings):
            b = bend.to_dict()
            # TOML has no null, and a None option is the operator's default anyway
            opts = {k: v for k, v in b.pop("opts", {}).items() if v is not None}
            if opts:
                b["opts"] = opts
            if mapping is not None:
                b["mapping"] = mapping.to_dict()
            bends.append(b)
        if bends:
            d["bends"] = bends
        d["features"] = {"taper": self.taper}
        if self.overrides:
            d["on"] = {model: dict(table) for model, table in self.overrides.items()}
        return d

    def for_model(self, model_name: str) -> "Preset":
        """This preset as it runs on ``model_name``: its ``[on.<model>]`` table merged on
        (tables merge key by key, arrays such as ``bends`` replace), or itself if it has none.

        mini draws what its captions say ("orange rings on deep blue"), so a preset written
        for SD-Turbo's open vocabulary carries an ``[on.mini]`` prompt in mini's words."""
        table = self.overrides.get(model_name)
        if not table:
            return self
        base = self.to_dict()
        base.pop("on", None)
        data = merged(base, table)
        data["model"] = {**data.get("model", {}), "name": model_name}
        return Preset.from_dict(data, source=f"preset {self.name!r} [on.{model_name}]")

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>", *, default_name: Optional[str] = None) -> "Preset":
        """A Preset from parsed TOML (or ``to_dict`` output). Every key is checked; errors are
        PresetErrors reading ``<source>: <key path>: <problem>``. ``default_name`` is used
        when the data has no ``name`` (a file's stem)."""
        try:
            kwargs = preset_kwargs(d, default_name)
            _check_overrides(d, kwargs["overrides"])
            return cls(**kwargs)
        except PresetError as e:
            raise e.at(source) from None


def _check_overrides(d: dict, overrides: dict[str, dict]) -> None:
    """Build the preset each ``[on.<model>]`` table makes, so a bad key in one fails when the
    file is read, not mid-show; the error's key path starts at ``on.<model>``."""
    base = {k: v for k, v in d.items() if k != "on"}
    for model, table in overrides.items():
        try:
            Preset.from_dict(merged(base, table), default_name=str(d.get("name", "preset")))
        except PresetError as e:
            raise PresetError(None, f"on.{model}.{e.key}" if e.key else f"on.{model}", e.problem) from None



# -- loading and saving ------------------------------------------------------------------


def load_preset(name_or_path: Union[str, Path]) -> Preset:
    """Read and check one preset (by name or path). A file without ``name`` is named after
    its stem. Raises PresetError."""
    path = find_preset(name_or_path)
    return Preset.from_dict(read_toml(path), source=str(path), default_name=path.stem)


def load_named_preset(name: str) -> Preset:
    """A preset by name only, from the preset folders: what OSC and the keys may load.

    No paths (a controller must not make the show read /etc/shadow), and errors that name
    the preset and its file by name only, never by absolute path or by whether some other
    file exists. Raises PresetError.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        raise PresetError(None, None, f"bad preset name {name[:64]!r}: a name from `netbend presets` "
                                      "(letters, digits, . _ -), not a path")
    stem = name[:-5] if name.endswith(".toml") else name
    for folder in preset_dirs():
        path = folder / f"{stem}.toml"
        if path.is_file():
            try:
                return Preset.from_dict(read_toml(path), source=f"{stem}.toml", default_name=stem)
            except PresetError as e:
                raise e.at(f"preset {stem}") from None
    names = [n for n, _ in list_presets()]
    raise PresetError(None, None, f"unknown preset {stem!r}; available: {', '.join(names) or 'none'}")


def preset_state(which, slots: Sequence[str] = (), limits=None):
    """The ShowState the live show gets from ``/netbend/preset/load which``, read and checked
    at the edge (on the OSC thread, never the render thread): a name from the preset
    folders, or a slot number into ``slots`` (the presets given on the command line, which
    may be paths). Raises PresetError or CommandError (both ValueErrors) with the reason."""
    if isinstance(which, str):
        preset = load_named_preset(which)
    else:
        n = int(which)
        if not 1 <= n <= len(slots):
            raise CommandError(f"preset slot {n} is empty; slots 1..{len(slots)}: {', '.join(map(str, slots))}")
        preset = load_preset(slots[n - 1])
    if preset.pipeline != "stream":
        raise CommandError(f"preset {preset.name!r} is a {preset.pipeline} preset; the live show runs stream presets")
    return state_from_preset(preset, limits=limits)


def check_presets(paths: Optional[Iterable[Union[str, Path]]] = None) -> list[tuple[Path, Optional[str]]]:
    """(path, error or None) for each given preset, or for every preset file in every
    preset folder (a user preset hiding a shipped one does not hide the shipped one's errors)."""
    if paths is None:
        paths = [p for folder in preset_dirs() for p in preset_files_in(folder)]
    results: list[tuple[Path, Optional[str]]] = []
    for p in paths:
        try:
            path = find_preset(p)
            load_preset(path)
            results.append((path, None))
        except PresetError as e:
            results.append((Path(os.fspath(p)), str(e)))
    return results


def save_preset(preset: Preset, path: Union[str, Path], *, overwrite: bool = True) -> Path:
    """Write ``preset`` to ``path`` atomically: a temp file in the same folder, fsync, then
    ``os.replace``, so a crash leaves either the old file or the new one, never half of one.

    An existing file is replaced only with ``overwrite`` and only if it parses as a preset:
    a file that does not (hand-edited, half-finished) is never clobbered.
    """
    if not isinstance(preset, Preset):
        raise TypeError(f"save_preset takes a Preset, got {type(preset).__name__}")
    path = Path(path).expanduser()
    source = str(path)
    if path.is_dir():
        raise PresetError(source, None, "is a folder, not a preset file")
    mode = 0o644
    if path.exists():
        if not overwrite:
            raise PresetError(source, None, "exists and overwrite is off; choose another name")
        try:
            load_preset(path)
        except PresetError as e:
            raise PresetError(source, None, f"the existing file is not a valid preset and was left untouched "
                                            f"({e.problem}); save under another name") from None
        mode = path.stat().st_mode & 0o777
    text = tomli_w.dumps(preset.to_dict())
    Preset.from_dict(tomllib.loads(text), source=source)  # never write what would not load back
    write_atomically(path, text, mode=mode)
    return path


def load_preset_model(preset: Preset, requested: Optional[str] = None, *, load: Optional[Callable] = None,
                      **options) -> tuple[Any, Preset]:
    """The model ``preset`` runs on, loaded, and the preset as it runs there (``for_model``).

    ``requested`` (``--model``) is always honoured and its errors raised. Otherwise the
    preset's own model is loaded; when its weights are not on this machine, netbend's own
    ``mini`` is used instead and one log line says so, with how to get the missing model.
    ``load`` stands for engine.models.load_model (a Ray worker passes its cached loader).
    """
    import logging

    from engine.model_files import ModelNotFoundError
    from engine.models import load_model

    load = load or load_model
    name = requested or preset.model
    vae = preset.vae if name == preset.model else "default"
    try:
        model = load(name, vae=vae, **options)
    except ModelNotFoundError as e:
        if requested or name == "mini":
            raise
        get = next((line.strip() for line in str(e).splitlines() if line.strip().startswith("hf download")),
                   str(e).splitlines()[0])
        logging.getLogger("live").warning("%s is not on this machine, so preset %r runs on netbend's own model "
                                          "mini; to use %s: %s", name, preset.name, name, get)
        model = load("mini", vae="default", **options)
    return model, preset.for_model(model.name)
