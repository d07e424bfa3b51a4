"""The checks a preset's parsed TOML passes on its way to a ``Preset``: which keys each table
may have, what type each value takes, and which key to blame when a dataclass refuses a
table. ``preset_kwargs`` turns the raw data into ``Preset`` keyword arguments.

Every failure is a ``PresetError`` whose key path points at the one key at fault
(``bends[1].operator``), so a typo in a hand-edited file is found without reading code.
The pipelines and their config dataclasses are engine.pipelines' registry.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Callable, Iterable, Optional, Union

from engine.bends import Bend
from engine.mappings import Mapping
from engine.operators import get_operator
from engine.pipelines import PIPELINES
from live.control.limits import SEED_MAX
from live.control.preset_files import PresetError

__all__ = ["BEND_KEYS", "MODEL_KEYS", "SIZE_KEYS", "TOP_KEYS", "blame", "checked_settings", "config_fields",
           "expect", "join", "merged", "preset_kwargs", "unknown_keys"]

TOP_KEYS = ("name", "description", "pipeline", "model", "bends", "features", "on")  # and the pipeline's own table
FEATURE_KEYS = ("taper",)
MODEL_KEYS = ("name", "vae", "width", "height")
SIZE_KEYS = ("width", "height")  # written in [model], passed into the pipeline config
BEND_KEYS = tuple(f.name for f in dataclasses.fields(Bend)) + ("mapping",)


def join(items: Iterable[Any]) -> str:
    return ", ".join(str(i) for i in items)


def unknown_keys(keys: Iterable[str], allowed: Iterable[str]) -> str:
    keys = list(keys)
    names = join(repr(k) for k in keys)
    return f"unknown key{'s' if len(keys) > 1 else ''} {names}; allowed: {join(allowed)}"


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


def expect(value: Any, typ: type, key: str) -> None:
    """PresetError at ``key`` unless ``value`` is a TOML value of type ``typ``."""
    if not _type_ok(value, typ):
        what = "a finite number" if typ is float else _TYPE_WORDS.get(typ, typ.__name__)
        raise PresetError(None, key, f"must be {what} (got {value!r})")


def config_fields(cls: type) -> dict[str, tuple[type, bool]]:
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


def blame(build: Callable[[dict], Any], base: dict, d: dict, prefix: str, error: Exception) -> PresetError:
    """Find the key of ``d`` that alone makes ``build`` fail (on top of a valid ``base``), so
    the message can point at it; a failure no single key causes is reported at ``prefix``."""
    for k, v in d.items():
        try:
            build({**base, k: v})
        except (ValueError, TypeError) as e:
            return PresetError(None, f"{prefix}.{k}", str(e))
    return PresetError(None, prefix, str(error))


def merged(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged on: nested tables key by key, everything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def checked_settings(pipeline: str, settings: dict, width: Optional[int], height: Optional[int]) -> dict:
    """The pipeline table ``settings`` with its None defaults dropped, once every key is a
    field of the pipeline's config of the right type and the config accepts them all (with
    the model's ``width`` and ``height``)."""
    cls = PIPELINES[pipeline][1]
    known = config_fields(cls)
    allowed = [k for k in known if k not in SIZE_KEYS]
    for key, value in list(settings.items()):
        if key in SIZE_KEYS:
            raise PresetError(None, f"{pipeline}.{key}", f"belongs in [model] (model.{key}), not in [{pipeline}]")
        if key not in known:
            raise PresetError(None, pipeline, unknown_keys([key], allowed))
        typ, optional = known[key]
        if value is None and optional:
            del settings[key]  # None is the default; TOML cannot write it anyway
            continue
        expect(value, typ, f"{pipeline}.{key}")
        if key == "seed" and not 0 <= value <= SEED_MAX:  # a seed OSC and torch can both carry
            raise PresetError(None, f"{pipeline}.seed", f"must be an integer 0..{SEED_MAX} (got {value})")
    try:
        cls(**settings, width=width, height=height)
    except (ValueError, TypeError) as e:
        sizes = {k: v for k, v in (("width", width), ("height", height)) if v is not None}
        blamed = blame(lambda d: cls(**d), {}, {**settings, **sizes}, pipeline, e)
        if blamed.key and blamed.key.split(".")[-1] in SIZE_KEYS:
            blamed = PresetError(None, "model." + blamed.key.split(".")[-1], blamed.problem)
        raise blamed from None
    return settings


# -- the tables ----------------------------------------------------------------------------


def preset_kwargs(d: Any, default_name: Optional[str]) -> dict[str, Any]:
    """Raw preset data -> Preset keyword arguments, checking keys and types on the way. The
    ``[on.<model>]`` tables are checked for form only: building each merged preset is
    ``Preset.from_dict``'s work."""
    if not isinstance(d, dict):
        raise PresetError(None, None, f"a preset must be a table of keys (got {type(d).__name__})")
    pipeline = _pipeline(d)
    name = d.get("name", default_name)
    if name is None:
        raise PresetError(None, "name", "missing; a preset needs a name")
    expect(name, str, "name")
    expect(d.get("description", ""), str, "description")
    kwargs: dict[str, Any] = {"name": name, "pipeline": pipeline, "description": d.get("description", "")}
    kwargs.update(_model(d.get("model", {})))
    settings = d.get(pipeline, {})
    if not isinstance(settings, dict):
        raise PresetError(None, pipeline, f"must be a table ([{pipeline}]) (got {settings!r})")
    kwargs["settings"] = settings
    raw_bends = d.get("bends", [])
    if not isinstance(raw_bends, list):
        raise PresetError(None, "bends", f"must be an array of tables ([[bends]]) (got {raw_bends!r})")
    parsed = [_bend(b, f"bends[{i}]") for i, b in enumerate(raw_bends)]
    kwargs["bends"] = [b for b, _ in parsed]
    kwargs["mappings"] = [m for _, m in parsed]
    kwargs.update(_features(d.get("features", {})))
    kwargs["overrides"] = _overrides(d.get("on", {}))
    return kwargs


def _pipeline(d: dict) -> str:
    """The preset's pipeline, once no key of ``d`` is unknown or another pipeline's table."""
    pipeline = d.get("pipeline", "stream")
    if not isinstance(pipeline, str) or pipeline not in PIPELINES:
        raise PresetError(None, "pipeline", f"unknown pipeline (got {pipeline!r}); allowed: {join(PIPELINES)}")
    for key in d:
        if key in PIPELINES and key != pipeline:
            raise PresetError(None, key, f"a [{key}] table in a {pipeline} preset; this preset's settings "
                                         f"table is [{pipeline}] (or set pipeline = \"{key}\")")
    unknown = [k for k in d if k not in TOP_KEYS and k != pipeline]
    if unknown:
        raise PresetError(None, None, unknown_keys(unknown, TOP_KEYS[:4] + (pipeline, "bends", "features")))
    return pipeline


def _model(model: Any) -> dict[str, Any]:
    if isinstance(model, str):
        model = {"name": model}  # model = "sd-turbo" as a shorthand for [model] name = ...
    if not isinstance(model, dict):
        raise PresetError(None, "model", f"must be a table ([model]) or a model name (got {model!r})")
    unknown = [k for k in model if k not in MODEL_KEYS]
    if unknown:
        raise PresetError(None, "model", unknown_keys(unknown, MODEL_KEYS))
    for key, typ in (("name", str), ("vae", str), ("width", int), ("height", int)):
        if key in model:
            expect(model[key], typ, f"model.{key}")
    return {"model" if k == "name" else k: v for k, v in model.items()}


def _features(features: Any) -> dict[str, Any]:
    if not isinstance(features, dict):
        raise PresetError(None, "features", f"must be a table ([features]) (got {features!r})")
    unknown = [k for k in features if k not in FEATURE_KEYS]
    if unknown:
        raise PresetError(None, "features", unknown_keys(unknown, FEATURE_KEYS))
    if "taper" in features:
        expect(features["taper"], str, "features.taper")
        return {"taper": features["taper"]}
    return {}


def _overrides(on: Any) -> dict[str, dict]:
    """``[on.<model>]`` tables: each a partial preset, with no name and no nested ``on``."""
    if not isinstance(on, dict):
        raise PresetError(None, "on", f"must be a table of per-model tables ([on.mini]) (got {on!r})")
    for model, table in on.items():
        if not isinstance(table, dict):
            raise PresetError(None, f"on.{model}", f"must be a table of preset keys (got {table!r})")
        bad = [k for k in table if k in ("name", "on")]
        if bad:
            raise PresetError(None, f"on.{model}", f"cannot set {join(bad)}; allowed: the preset's other keys")
    return {str(model): dict(table) for model, table in on.items()}


# Bend fields and the TOML types each may take (Bend itself checks the values).
_BEND_TYPES: dict[str, tuple[type, ...]] = {
    "operator": (str,), "layer": (str, int), "param": (float,), "target": (str, list),
    "step": (int, str, list), "normalize": (int, str), "opts": (dict,), "enabled": (bool,),
}


def _bend(d: Any, key: str) -> tuple[Bend, Optional[Mapping]]:
    if not isinstance(d, dict):
        raise PresetError(None, key, f"a bend must be a table ([[bends]]) (got {d!r})")
    unknown = [k for k in d if k not in BEND_KEYS]
    if unknown:
        raise PresetError(None, key, unknown_keys(unknown, BEND_KEYS))
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
        blamed = blame(lambda f: Bend.from_dict(f, bare_int="refuse"), {"operator": op}, fields_, key, e)
        if blamed.key == f"{key}.opts":  # point at the option itself
            blamed = blame(lambda o: Bend(op, opts=o), {}, d["opts"], blamed.key, ValueError(blamed.problem))
        raise blamed from None
    return bend, _mapping(d.get("mapping"), key)


def _mapping(mapping: Any, key: str) -> Optional[Mapping]:
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        raise PresetError(None, f"{key}.mapping", f"must be a table ([bends.mapping]) (got {mapping!r})")
    try:
        return Mapping.from_dict(dict(mapping))
    except (ValueError, TypeError) as e:
        raise blame(Mapping.from_dict, {"feature": "rms"}, mapping, f"{key}.mapping", e) from None
