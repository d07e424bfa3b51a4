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
Finding, listing, reading and atomically writing the files (and ``PresetError``) is
live/control/preset_files.py.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import tomli_w

from engine.bends import Bend
from engine.chain import ChainConfig
from engine.features import TAPERS
from engine.mappings import Mapping
from engine.operators import get_operator
from engine.stream import StreamConfig
from engine.walk import WalkConfig
from live.control.limits import SEED_MAX
from live.control.preset_files import (PresetError, list_presets, find_preset, preset_dirs, preset_files_in, read_toml,
                                       write_atomically)

__all__ = [
    "BEND_KEYS", "CONFIGS", "MODEL_KEYS", "PIPELINES", "Preset", "SIZE_KEYS", "TOP_KEYS",
    "check_presets", "load_named_preset", "load_preset", "preset_state", "save_preset",
]

PIPELINES = ("stream", "walk", "chain")
CONFIGS: dict[str, type] = {"stream": StreamConfig, "walk": WalkConfig, "chain": ChainConfig}
TOP_KEYS = ("name", "description", "pipeline", "model", "bends", "features", "on")  # and the pipeline's own table
FEATURE_KEYS = ("taper",)
MODEL_KEYS = ("name", "vae", "width", "height")
SIZE_KEYS = ("width", "height")  # written in [model], passed into the pipeline config
BEND_KEYS = tuple(f.name for f in dataclasses.fields(Bend)) + ("mapping",)

Config = Union[StreamConfig, WalkConfig, ChainConfig]


def _join(items: Iterable[Any]) -> str:
    return ", ".join(str(i) for i in items)


def _unknown(keys: Iterable[str], allowed: Iterable[str]) -> str:
    keys = list(keys)
    names = _join(repr(k) for k in keys)
    return f"unknown key{'s' if len(keys) > 1 else ''} {names}; allowed: {_join(allowed)}"


# -- value types -------------------------------------------------------------------------

_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "an array"}


def _type_ok(value: Any, typ: type) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, typ)


def _expect(value: Any, typ: type, key: str) -> None:
    if not _type_ok(value, typ):
        what = "a finite number" if typ is float else _TYPE_WORDS.get(typ, typ.__name__)
        raise PresetError(None, key, f"must be {what} (got {value!r})")


def _config_fields(cls: type) -> dict[str, tuple[type, bool]]:
    """{field: (type, optional)} of a config dataclass, from its resolved annotations."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t, optional = hints[f.name], False
        if typing.get_origin(t) in (Union, types.UnionType):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            optional, t = len(args) < len(typing.get_args(t)), args[0]
        out[f.name] = (t, optional)
    return out


def _blame(build: Callable[[dict], Any], base: dict, d: dict, prefix: str, error: Exception) -> PresetError:
    """Find the key of ``d`` that alone makes ``build`` fail (on top of a valid ``base``), so
    the message can point at it; a failure no single key causes is reported at ``prefix``."""
    for k, v in d.items():
        try:
            build({**base, k: v})
        except (ValueError, TypeError) as e:
            return PresetError(None, f"{prefix}.{k}", str(e))
    return PresetError(None, prefix, str(error))


# -- the preset --------------------------------------------------------------------------


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
        _expect(self.description, str, "description")
        if self.pipeline not in PIPELINES:
            raise PresetError(None, "pipeline", f"unknown pipeline (got {self.pipeline!r}); allowed: {_join(PIPELINES)}")
        for key, value in (("model.name", self.model), ("model.vae", self.vae)):
            if not isinstance(value, str) or not value.strip():
                raise PresetError(None, key, f"must be a non-empty string (got {value!r})")
        for key in SIZE_KEYS:
            value = getattr(self, key)
            if value is not None:
                _expect(value, int, f"model.{key}")
        if self.taper not in TAPERS:
            raise PresetError(None, "features.taper", f"unknown taper {self.taper!r}; allowed: {_join(TAPERS)}")
        self.settings = self._checked_settings(dict(self.settings))
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

    def _checked_settings(self, settings: dict) -> dict:
        table, cls = self.pipeline, CONFIGS[self.pipeline]
        known = _config_fields(cls)
        allowed = [k for k in known if k not in SIZE_KEYS]
        for key, value in list(settings.items()):
            if key in SIZE_KEYS:
                raise PresetError(None, f"{table}.{key}", f"belongs in [model] (model.{key}), not in [{table}]")
            if key not in known:
                raise PresetError(None, table, _unknown([key], allowed))
            typ, optional = known[key]
            if value is None and optional:
                del settings[key]  # None is the default; TOML cannot write it anyway
                continue
            _expect(value, typ, f"{table}.{key}")
            if key == "seed" and not 0 <= value <= SEED_MAX:  # a seed OSC and torch can both carry
                raise PresetError(None, f"{table}.seed", f"must be an integer 0..{SEED_MAX} (got {value})")
        try:
            self._config_with(settings)
        except (ValueError, TypeError) as e:
            sizes = {k: getattr(self, k) for k in SIZE_KEYS if getattr(self, k) is not None}
            blamed = _blame(lambda d: cls(**d), {}, {**settings, **sizes}, table, e)
            if blamed.key and blamed.key.split(".")[-1] in SIZE_KEYS:
                blamed = PresetError(None, "model." + blamed.key.split(".")[-1], blamed.problem)
            raise blamed from None
        return settings

    def _config_with(self, settings: dict) -> Config:
        return CONFIGS[self.pipeline](**settings, width=self.width, height=self.height)

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
        merged = _merged(base, table)
        merged["model"] = {**merged.get("model", {}), "name": model_name}
        return Preset.from_dict(merged, source=f"preset {self.name!r} [on.{model_name}]")

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>", *, default_name: Optional[str] = None) -> "Preset":
        """A Preset from parsed TOML (or ``to_dict`` output). Every key is checked; errors are
        PresetErrors reading ``<source>: <key path>: <problem>``. ``default_name`` is used
        when the data has no ``name`` (a file's stem)."""
        try:
            return cls(**_parse(d, default_name))
        except PresetError as e:
            raise e.at(source) from None


def _merged(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged on: nested tables key by key, everything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _parse_overrides(d: dict, pipeline: str) -> dict[str, dict]:
    """``[on.<model>]`` tables: each a partial preset (no name, no nested ``on``), checked by
    building the merged preset, so a bad key fails when the file is read, not mid-show."""
    on = d.get("on", {})
    if not isinstance(on, dict):
        raise PresetError(None, "on", f"must be a table of per-model tables ([on.mini]) (got {on!r})")
    for model, table in on.items():
        if not isinstance(table, dict):
            raise PresetError(None, f"on.{model}", f"must be a table of preset keys (got {table!r})")
        bad = [k for k in table if k in ("name", "on")]
        if bad:
            raise PresetError(None, f"on.{model}", f"cannot set {_join(bad)}; allowed: the preset's other keys")
        base = {k: v for k, v in d.items() if k != "on"}
        try:
            Preset.from_dict(_merged(base, table), default_name=str(d.get("name", "preset")))
        except PresetError as e:
            raise PresetError(None, f"on.{model}.{e.key}" if e.key else f"on.{model}", e.problem) from None
    return {str(model): dict(table) for model, table in on.items()}


def _parse(d: Any, default_name: Optional[str]) -> dict[str, Any]:
    """Raw preset data -> Preset keyword arguments, checking keys and types on the way."""
    if not isinstance(d, dict):
        raise PresetError(None, None, f"a preset must be a table of keys (got {type(d).__name__})")
    pipeline = d.get("pipeline", "stream")
    if not isinstance(pipeline, str) or pipeline not in PIPELINES:
        raise PresetError(None, "pipeline", f"unknown pipeline (got {pipeline!r}); allowed: {_join(PIPELINES)}")
    for key in d:
        if key in PIPELINES and key != pipeline:
            raise PresetError(None, key, f"a [{key}] table in a {pipeline} preset; this preset's settings "
                                         f"table is [{pipeline}] (or set pipeline = \"{key}\")")
    unknown = [k for k in d if k not in TOP_KEYS and k != pipeline]
    if unknown:
        raise PresetError(None, None, _unknown(unknown, TOP_KEYS[:4] + (pipeline, "bends", "features")))

    name = d.get("name", default_name)
    if name is None:
        raise PresetError(None, "name", "missing; a preset needs a name")
    _expect(name, str, "name")
    _expect(d.get("description", ""), str, "description")
    kwargs: dict[str, Any] = {"name": name, "pipeline": pipeline, "description": d.get("description", "")}

    model = d.get("model", {})
    if isinstance(model, str):
        model = {"name": model}  # model = "sd-turbo" as a shorthand for [model] name = ...
    if not isinstance(model, dict):
        raise PresetError(None, "model", f"must be a table ([model]) or a model name (got {model!r})")
    unknown = [k for k in model if k not in MODEL_KEYS]
    if unknown:
        raise PresetError(None, "model", _unknown(unknown, MODEL_KEYS))
    for key, typ in (("name", str), ("vae", str), ("width", int), ("height", int)):
        if key in model:
            _expect(model[key], typ, f"model.{key}")
    kwargs.update({"model" if k == "name" else k: v for k, v in model.items()})

    settings = d.get(pipeline, {})
    if not isinstance(settings, dict):
        raise PresetError(None, pipeline, f"must be a table ([{pipeline}]) (got {settings!r})")
    kwargs["settings"] = settings

    raw_bends = d.get("bends", [])
    if not isinstance(raw_bends, list):
        raise PresetError(None, "bends", f"must be an array of tables ([[bends]]) (got {raw_bends!r})")
    parsed = [_parse_bend(b, f"bends[{i}]") for i, b in enumerate(raw_bends)]
    kwargs["bends"] = [b for b, _ in parsed]
    kwargs["mappings"] = [m for _, m in parsed]

    features = d.get("features", {})
    if not isinstance(features, dict):
        raise PresetError(None, "features", f"must be a table ([features]) (got {features!r})")
    unknown = [k for k in features if k not in FEATURE_KEYS]
    if unknown:
        raise PresetError(None, "features", _unknown(unknown, FEATURE_KEYS))
    if "taper" in features:
        _expect(features["taper"], str, "features.taper")
        kwargs["taper"] = features["taper"]
    kwargs["overrides"] = _parse_overrides(d, pipeline)
    return kwargs


# Bend fields and the TOML types each may take (Bend itself checks the values).
_BEND_TYPES: dict[str, tuple[type, ...]] = {
    "operator": (str,), "layer": (str, int), "param": (float,), "target": (str, list),
    "step": (int, str, list), "normalize": (int, str), "opts": (dict,), "enabled": (bool,),
}


def _parse_bend(d: Any, key: str) -> tuple[Bend, Optional[Mapping]]:
    if not isinstance(d, dict):
        raise PresetError(None, key, f"a bend must be a table ([[bends]]) (got {d!r})")
    unknown = [k for k in d if k not in BEND_KEYS]
    if unknown:
        raise PresetError(None, key, _unknown(unknown, BEND_KEYS))
    if "operator" not in d:
        raise PresetError(None, f"{key}.operator", "missing; every bend needs an operator")
    for name, typs in _BEND_TYPES.items():
        if name in d and not any(_type_ok(d[name], t) for t in typs):
            words = " or ".join(_TYPE_WORDS.get(t, "an array" if t is list else "a table") for t in typs)
            raise PresetError(None, f"{key}.{name}", f"must be {words} (got {d[name]!r})")
    op = d["operator"]
    try:
        get_operator(op)
    except ValueError as e:
        raise PresetError(None, f"{key}.operator", str(e)) from None
    fields_ = {k: v for k, v in d.items() if k != "mapping"}
    try:
        bend = Bend.from_dict(fields_, bare_int="refuse")  # a bare layer number is ambiguous in a preset
    except (ValueError, TypeError) as e:
        blamed = _blame(lambda f: Bend.from_dict(f, bare_int="refuse"), {"operator": op}, fields_, key, e)
        if blamed.key == f"{key}.opts":  # point at the option itself
            blamed = _blame(lambda o: Bend(op, opts=o), {}, d["opts"], blamed.key, ValueError(blamed.problem))
        raise blamed from None

    mapping = d.get("mapping")
    if mapping is not None:
        if not isinstance(mapping, dict):
            raise PresetError(None, f"{key}.mapping", f"must be a table ([bends.mapping]) (got {mapping!r})")
        try:
            mapping = Mapping.from_dict(dict(mapping))
        except (ValueError, TypeError) as e:
            raise _blame(Mapping.from_dict, {"feature": "rms"}, mapping, f"{key}.mapping", e) from None
    return bend, mapping


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
    from live.control.state import CommandError, state_from_preset

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
    write_atomically(path, text, mode)
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
