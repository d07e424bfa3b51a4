"""Presets: the shipped files load and round-trip, bad files say what is wrong and where,
saving is atomic and never clobbers, and lookup finds user presets before shipped ones."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from engine.bends import Bend
from engine.chain import ChainConfig
from engine.mappings import Mapping
from engine.stream import StreamConfig
from engine.walk import WalkConfig
from engine.pipelines import PIPELINES
from live.control import preset_files as P
from live.control.preset_files import PresetError, find_preset, list_presets, preset_dirs, shipped_preset_dir
from live.control.presets import Preset, check_presets, load_preset, save_preset

SHIPPED = sorted(shipped_preset_dir().glob("*.toml"))
LIVE = ("live-colour-cycle", "live-scene-change", "live-stained-glass", "live-erosion-texture")
# Bend points of SD-Turbo's U-Net (4 down blocks, mid, 4 up blocks) and the finer names inside them.
SD_POINT = re.compile(r"^(conv_in|conv_out|mid|(down|up)\.[0-3])"
                      r"(\.(resnets|attentions|downsamplers|upsamplers)\.\d)?$")


@pytest.fixture(autouse=True)
def user_dir(tmp_path_factory, monkeypatch) -> Path:
    """An empty user preset folder, so the tester's own ~/.config never leaks in."""
    folder = tmp_path_factory.mktemp("user-presets")
    monkeypatch.setenv("NETBEND_PRESETS", str(folder))
    return folder


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- shipped presets ---------------------------------------------------------------------


def test_every_shipped_preset_loads():
    results = check_presets()
    assert {p.name for p, _ in results} == {p.name for p in SHIPPED}
    assert [(p.name, err) for p, err in results if err] == []
    names = {name for name, _ in list_presets()}
    assert {"default", "paper-piano-mesh", "paper-floating-orb", *LIVE} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_preset_round_trips(path, tmp_path):
    preset = load_preset(path)
    assert preset.name == path.stem  # the file name is the name the user types
    assert preset.description.strip()
    assert Preset.from_dict(preset.to_dict()) == preset
    assert load_preset(save_preset(preset, tmp_path / path.name)) == preset
    config = preset.config()
    assert isinstance(config, {"stream": StreamConfig, "walk": WalkConfig, "chain": ChainConfig}[preset.pipeline])


def test_paper_piano_mesh_is_the_papers_setup():
    """As the authors' code made it (issue 11): SD 1.4, seed 46, the code's walk, R1 at
    layer 40 by 25 x rms unclipped, a rectangular window."""
    p = load_preset("paper-piano-mesh")
    assert (p.pipeline, p.model, p.taper) == ("walk", "sd-1.4", "none")
    c = p.config()
    assert (c.prompt, c.steps, c.guidance, c.seed) == ("3D mesh geometry", 50, 7.5, 46)
    assert (c.walk, c.amplitude, c.period) == ("base_circle", 0.3, None)
    (bend,), (mapping,) = p.bends, p.mappings
    assert (bend.operator, bend.layer, bend.step) == ("R1", "latent", frozenset({40}))
    assert mapping.feature == "rms"
    assert (mapping.in_range, mapping.out_range) == ((0.0, 1.0), (0.0, 25.0))  # 25 rms


def test_paper_floating_orb_is_the_papers_setup():
    p = load_preset("paper-floating-orb")
    assert p.pipeline == "chain"
    c = p.config()
    assert (c.prompt, c.strength, c.steps) == ("a floating orb", 0.5, 50)
    assert [(b.layer, b.step) for b in p.bends] == [("latent", frozenset({1}))]
    assert p.mappings[0] is not None


@pytest.fixture(scope="module")
def sd_turbo_points():
    """The point names of the real SD-Turbo U-Net (built on the meta device: no weights)."""
    from engine.bending import unet_points
    from engine.tiny import sd_turbo_architecture

    return set(unet_points(sd_turbo_architecture(device="meta").unet))


@pytest.mark.parametrize("name", ("default",) + LIVE)
def test_live_presets_bend_sd_turbo_unet_points(name, sd_turbo_points):
    p = load_preset(name)
    assert (p.pipeline, p.model) == ("stream", "sd-turbo")
    c = p.config()
    assert (c.steps, c.guidance) == (1, 0.0) and 0.3 <= c.strength <= 0.7
    assert p.bends and all(SD_POINT.match(b.layer) for b in p.bends if b.layer != "latent")
    assert all(b.layer in sd_turbo_points for b in p.bends if b.layer != "latent")
    # a 1-step stream has latent points 0 (noised input) and 1 (clean output)
    assert all(b.step is not None and b.step <= {0, 1} for b in p.bends if b.layer == "latent")
    assert any(b.layer != "latent" for b in p.bends), "a live preset bends inside the U-Net"
    assert any(m is not None for m in p.mappings), "a live preset reacts to audio"


def test_live_presets_differ():
    looks = {name: tuple((b.operator, b.layer) for b in load_preset(name).bends) for name in LIVE}
    assert len(set(looks.values())) == len(LIVE)


# -- errors ------------------------------------------------------------------------------

BAD = {
    "unknown-top-key": ('name = "x"\ncolour = 1\n', ["unknown key 'colour'", "allowed: name, description"]),
    "unknown-operator": ('name = "x"\n[[bends]]\noperator = "rotat"\n',
                         ["bends[0].operator", "unknown operator 'rotat'", "rotate", "dilate"]),
    "bad-feature": ('name = "x"\n[[bends]]\noperator = "rotate"\n[bends.mapping]\nfeature = "loud"\n',
                    ["bends[0].mapping.feature", "'loud'", "rms", "centroid", "onset"]),
    "bad-curve": ('name = "x"\n[[bends]]\noperator = "rotate"\n[[bends]]\noperator = "add"\n'
                  '[bends.mapping]\nfeature = "rms"\ncurve = "cubic"\n',
                  ["bends[1].mapping.curve", "'cubic'", "linear, exp, log"]),
    "bad-pipeline": ('name = "x"\npipeline = "strem"\n', ["pipeline", "'strem'", "stream, walk, chain"]),
    "wrong-table": ('name = "x"\npipeline = "walk"\n[chain]\nstrength = 0.5\n', ["chain", "walk preset", "[walk]"]),
    "bad-strength": ('name = "x"\n[stream]\nstrength = 1.5\n', ["stream.strength", "(0, 1]", "1.5"]),
    "strength-type": ('name = "x"\n[stream]\nstrength = "high"\n', ["stream.strength", "number", "'high'"]),
    "unknown-setting": ('name = "x"\n[stream]\npromt = "a"\n', ["stream", "'promt'", "prompt, steps"]),
    "size-in-table": ('name = "x"\n[stream]\nwidth = 512\n', ["stream.width", "[model]"]),
    "bad-width": ('name = "x"\n[model]\nwidth = 500\n', ["model.width", "multiple of 8"]),
    "unknown-model-key": ('name = "x"\n[model]\nsize = 5\n', ["model", "'size'", "name, vae, width, height"]),
    "bad-plane": ('name = "x"\n[[bends]]\noperator = "rotate"\nopts = { plane = "R9" }\n',
                  ["bends[0].opts.plane", "R9", "R1"]),
    "bad-target": ('name = "x"\n[[bends]]\noperator = "add"\ntarget = "chanels 1"\n', ["bends[0].target", "channels"]),
    "unknown-bend-key": ('name = "x"\n[[bends]]\noperator = "add"\nlayr = "mid"\n',
                         ["bends[0]", "'layr'", "layer"]),
    "no-operator": ('name = "x"\n[[bends]]\nlayer = "mid"\n', ["bends[0].operator", "missing"]),
    "nan-setting": ('name = "x"\n[stream]\nguidance = nan\n', ["stream.guidance", "finite"]),
}


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_preset_names_file_key_and_allowed(case, tmp_path):
    text, expected = BAD[case]
    path = write(tmp_path, case, text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, (part, message)
    assert check_presets([path]) == [(path, message)]


def test_toml_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "broken", 'name = "x"\n\n[stream]\nprompt = "unterminated\n')
    with pytest.raises(PresetError, match=r"broken\.toml: line 4, column \d+: TOML syntax error"):
        load_preset(path)


def test_preset_validates_when_made():
    with pytest.raises(PresetError, match="pipeline"):
        Preset("x", pipeline="loop")
    with pytest.raises(PresetError, match=r"chain\.strength"):
        Preset("x", pipeline="chain", settings={"strength": 0.0})
    with pytest.raises(PresetError, match="2 mappings for 1 bends"):
        Preset("x", bends=[Bend("add")], mappings=[None, None])


# -- the Preset object -------------------------------------------------------------------


def test_config_merges_settings_and_size_onto_defaults():
    p = Preset("x", pipeline="walk", width=256, height=384, settings={"prompt": "a", "steps": 20})
    assert p.config() == WalkConfig(prompt="a", steps=20, width=256, height=384)
    assert p.config() is not p.config()  # a fresh config each time: pipelines may change theirs
    assert Preset("y").config() == StreamConfig()


def test_mappings_align_with_bends_and_round_trip(tmp_path):
    bends = [Bend("rotate", "latent", 0.0, step=40, opts={"plane": "R1"}), Bend("add", "mid", 0.1, target="channels 0 2")]
    p = Preset("x", pipeline="walk", bends=bends, mappings=[Mapping("rms", (0.0, 0.5), (0.0, 2 * math.pi))])
    assert p.mappings[1] is None
    assert load_preset(save_preset(p, tmp_path / "x.toml")) == p


def test_name_defaults_to_file_stem(tmp_path):
    path = write(tmp_path, "nameless", 'pipeline = "stream"\n')
    assert load_preset(path).name == "nameless"


# -- saving ------------------------------------------------------------------------------


def test_save_never_clobbers_an_unparseable_file(tmp_path):
    path = write(tmp_path, "mine", "name = \"half edited\nbends = [\n")
    before = path.read_bytes()
    with pytest.raises(PresetError, match="not a valid preset and was left untouched.*another name"):
        save_preset(Preset("x"), path)
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [path]


def test_save_without_overwrite_refuses_an_existing_file(tmp_path):
    path = save_preset(Preset("x", description="first"), tmp_path / "x.toml")
    before = path.read_bytes()
    with pytest.raises(PresetError, match="exists"):
        save_preset(Preset("x", description="second"), path, overwrite=False)
    assert path.read_bytes() == before
    save_preset(Preset("x", description="second"), path)  # overwrite is the default
    assert load_preset(path).description == "second"


def test_crash_mid_save_leaves_the_original_and_no_temp_file(tmp_path, monkeypatch):
    path = save_preset(Preset("x", description="original"), tmp_path / "x.toml")
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk pulled out"):
        save_preset(Preset("x", description="new"), path)
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [path]


def test_save_creates_folders(tmp_path):
    path = save_preset(Preset("x"), tmp_path / "a" / "b" / "x.toml")
    assert load_preset(path) == Preset("x")


# -- finding -----------------------------------------------------------------------------


def test_find_by_name_and_by_path(tmp_path, user_dir):
    assert find_preset("default") == shipped_preset_dir() / "default.toml"
    assert find_preset("default.toml") == shipped_preset_dir() / "default.toml"
    own = write(tmp_path, "elsewhere", 'name = "elsewhere"\n')
    assert find_preset(str(own)) == own
    assert find_preset(own) == own
    assert load_preset(str(own)).name == "elsewhere"
    assert preset_dirs() == [user_dir, shipped_preset_dir()]


def test_unknown_name_lists_available(tmp_path):
    with pytest.raises(PresetError, match=r"unknown preset 'nonesuch'; available: .*default.*paper-piano-mesh"):
        find_preset("nonesuch")
    with pytest.raises(PresetError, match="no such preset file"):
        find_preset(str(tmp_path / "missing.toml"))


def test_user_folder_overrides_shipped(user_dir):
    mine = write(user_dir, "default", 'name = "default"\ndescription = "mine"\n')
    assert find_preset("default") == mine
    assert load_preset("default").description == "mine"
    assert dict(list_presets())["default"] == mine
    checked = [p for p, _ in check_presets()]
    assert mine in checked and shipped_preset_dir() / "default.toml" in checked


def test_user_folder_defaults_to_config_home(monkeypatch, tmp_path):
    monkeypatch.delenv("NETBEND_PRESETS")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert P.user_preset_dirs() == [tmp_path / "netbend" / "presets"]


def test_pipelines_constant():
    assert tuple(PIPELINES) == ("stream", "walk", "chain")  # the engine's registry is the presets' too


def test_a_pipeline_the_engine_does_not_register_is_refused_with_its_names():
    with pytest.raises(PresetError, match="pipeline: unknown pipeline .*allowed: stream, walk, chain"):
        Preset.from_dict({"name": "x", "pipeline": "loop"})
    assert Preset("x", pipeline="walk", settings={"steps": 7}).config() == WalkConfig(steps=7)


def test_a_temp_file_left_by_a_killed_save_is_not_a_preset(user_dir):
    # engine/atomic.py's temp file keeps the target's suffix, so a kill -9 mid-save leaves
    # a hidden .toml beside the presets: it must not be listed, checked or found.
    save_preset(Preset("kept"), user_dir / "kept.toml")
    (user_dir / ".kept.toml.3f2a.tmp.toml").write_text("name = \"half")
    assert [p.name for p in P.preset_files_in(user_dir)] == ["kept.toml"]
    assert ".kept.toml.3f2a.tmp" not in dict(list_presets())
    assert all(error is None for path, error in check_presets() if path.parent == user_dir)
