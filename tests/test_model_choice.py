"""Which model a preset runs on: its own, or netbend's mini when that one is missing,
and the preset's [on.<model>] table merged on for the model it runs on."""
from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.model_files import ModelNotFoundError
from live.control.preset_files import PresetError
from live.control.presets import Preset, load_preset_model

DEFAULT = tomllib.loads((Path(__file__).resolve().parents[1] / "presets" / "default.toml").read_text())


def _preset(on):
    return Preset.from_dict({**DEFAULT, "on": on}, source="x.toml")


def test_on_model_table_merges_tables_and_replaces_arrays():
    p = _preset({"mini": {"stream": {"prompt": "orange rings on deep blue"},
                          "bends": [{"operator": "R1", "layer": "latent@1", "param": 0.5}]}})
    mini = p.for_model("mini")
    assert mini.settings["prompt"] == "orange rings on deep blue"
    assert mini.settings["strength"] == p.settings["strength"]  # kept from the base table
    assert [b.operator for b in mini.bends] == ["R1"] and len(p.bends) == 2
    assert mini.model == "mini"
    assert p.for_model("sd-turbo") is p
    # it survives a save: to_dict carries the table and reads back the same
    assert Preset.from_dict(p.to_dict()).for_model("mini").settings == mini.settings


@pytest.mark.parametrize("on, message", [
    ({"mini": {"stream": {"promt": "x"}}}, "x.toml: on.mini.stream: unknown key 'promt'"),
    ({"mini": {"name": "other"}}, "x.toml: on.mini: cannot set name"),
    ({"mini": "rings"}, "x.toml: on.mini: must be a table"),
    ("mini", "x.toml: on: must be a table"),
    ({"mini": {"bends": [{"operator": "rotat"}]}}, "on.mini.bends[0].operator: unknown operator 'rotat'"),
])
def test_a_bad_on_table_fails_when_the_file_is_read(on, message):
    with pytest.raises(PresetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _preset(on)


def _loader(missing: set[str]):
    calls = []

    def load(name, **options):
        calls.append(name)
        if name in missing:
            raise ModelNotFoundError(f"model {name!r} is not in the cache.\n  Download it with:\n"
                                     f"    hf download stabilityai/{name}\n  or pass a folder")
        return SimpleNamespace(name=name)
    return load, calls


def test_a_missing_preset_model_falls_back_to_mini_in_one_line(caplog):
    p = _preset({"mini": {"stream": {"prompt": "cyan tunnel on black"}}})
    load, calls = _loader({"sd-turbo"})
    with caplog.at_level(logging.WARNING, logger="live"):
        model, running = load_preset_model(p, None, load=load, device="cpu")
    assert calls == ["sd-turbo", "mini"] and model.name == "mini"
    assert running.settings["prompt"] == "cyan tunnel on black"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "mini" in lines[0] and "hf download stabilityai/sd-turbo" in lines[0]


def test_a_requested_model_is_never_swapped():
    load, calls = _loader({"sd-turbo"})
    with pytest.raises(ModelNotFoundError, match="hf download"):
        load_preset_model(_preset({}), "sd-turbo", load=load)
    assert calls == ["sd-turbo"]
