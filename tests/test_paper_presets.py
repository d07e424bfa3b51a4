"""The paper presets follow the authors' code, and presets spell layers unmistakably (issue 11)."""
import pytest

from engine.mappings import MappingState
from live.control.preset_files import PresetError
from live.control.presets import Preset, load_preset, save_preset

PAPER = ["paper-piano-mesh", "paper-starry-forest", "paper-floating-orb", "paper-guitar-prompts",
         "paper-threshold-orb"]


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_use_the_codes_seed_model_and_window(name):
    p = load_preset(name)
    c = p.config()
    assert (p.model, p.taper, c.seed, c.steps, c.guidance) == ("sd-1.4", "none", 46, 50, 7.5)
    if p.pipeline == "walk":
        assert (c.walk, c.amplitude) == ("base_circle", 0.3)
    assert all(b.layer == "latent" and b.step is not None for b in p.bends)


@pytest.mark.parametrize("name", ["paper-piano-mesh", "paper-starry-forest", "paper-guitar-prompts"])
def test_loudness_to_angle_is_25_rms_unclipped(name):
    (mapping,) = load_preset(name).mappings
    state = MappingState(mapping)
    for rms in (0.0, 0.1, 0.3, 0.5, 0.8, 1.0):  # past 0.5, where the old 0..2 pi mapping clipped
        assert state.update(rms, 0.05) == pytest.approx(25.0 * rms)


def test_threshold_preset_uses_the_codes_threshold():
    (bend,) = load_preset("paper-threshold-orb").bends
    assert (bend.operator, bend.step) == ("threshold_abs", frozenset({40}))


def test_chain_preset_leaves_frame_0_unbent_like_the_code():
    c = load_preset("paper-floating-orb").config()
    assert c.bend_first is False and c.prompt_after_first is None


def preset_data(**bend):
    return {"name": "t", "pipeline": "walk", "walk": {"steps": 4}, "bends": [{"operator": "add", **bend}]}


@pytest.mark.parametrize("layer", [40, "40"])
def test_a_bare_layer_number_in_a_preset_is_refused_with_both_spellings(layer):
    with pytest.raises(PresetError) as e:
        Preset.from_dict(preset_data(layer=layer), source="x.toml")
    text = str(e.value)
    assert "x.toml" in text and "bends[0].layer" in text
    assert '"latent@40"' in text and '"unet:40"' in text


def test_both_spellings_load_and_save_back(tmp_path):
    p = Preset.from_dict({**preset_data(layer="unet:12"), "features": {"taper": "none"}})
    q = Preset.from_dict(preset_data(layer="latent@3"))
    assert p.bends[0].layer == 12 and (q.bends[0].layer, q.bends[0].step) == ("latent", frozenset({3}))
    again = load_preset(save_preset(p, tmp_path / "t.toml"))
    assert again == p and again.taper == "none"
    assert "unet:12" in (tmp_path / "t.toml").read_text()


@pytest.mark.parametrize("features, key, message", [
    ({"taper": "blackman"}, "features.taper", "allowed: hann, none"),
    ({"window": 0.05}, "features", "unknown key 'window'; allowed: taper"),
    ("none", "features", "must be a table"),
])
def test_bad_features_table_says_what_is_allowed(features, key, message):
    with pytest.raises(PresetError, match=message) as e:
        Preset.from_dict({**preset_data(layer="latent@1"), "features": features})
    assert key in str(e.value)


def test_normalize_by_name_and_prompt_schedule_in_a_preset():
    p = Preset.from_dict({"name": "s", "pipeline": "chain",
                          "chain": {"steps": 10, "prompts": [[0, "a"], [5, "b"]]},
                          "bends": [{"operator": "add", "layer": "latent@1", "normalize": "max"}]})
    assert p.bends[0].normalize == "max" and p.config().prompts == [[0, "a"], [5, "b"]]
    with pytest.raises(PresetError, match="chain.prompts.*times must increase"):
        Preset.from_dict({"name": "s", "pipeline": "chain", "chain": {"prompts": [[5, "a"], [1, "b"]]}})
