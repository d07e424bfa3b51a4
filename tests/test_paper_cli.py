"""The paper on the command line (issue 11): features --taper, sweep's layer spellings and
--figure, render's --init-image and --prompts and the preset's window, on tiny."""
import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from live.cli import main
from live.media import write_audio_wav

RATE = 44100


def authors_features(window, sr):
    """util.py of dzluke/DAFX2024, written out: rms; the moments of the magnitude spectrum
    of the window zero-padded to the next power of two (no taper)."""
    n = 1 << (len(window) - 1).bit_length()
    amps = np.abs(np.fft.rfft(window, n))
    freqs = np.fft.rfftfreq(n, d=1.0 / sr)
    cent = np.sum(amps * freqs) / np.sum(amps)
    spr = math.sqrt(np.sum(amps * (freqs - cent) ** 2) / np.sum(amps))
    skew = np.sum(amps * (freqs - cent) ** 3) / (spr ** 3 * np.sum(amps))
    kurt = np.sum(amps * (freqs - cent) ** 4) / (spr ** 4 * np.sum(amps))
    return {"rms": math.sqrt(np.mean(window ** 2)), "centroid": cent, "spread": spr, "skewness": skew,
            "kurtosis": kurt}, amps


@pytest.fixture(scope="module")
def chord(tmp_path_factory):
    t = np.arange(int(0.5 * RATE)) / RATE
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234.5 * t) * (t > 0.2)).astype(np.float32)
    path = tmp_path_factory.mktemp("audio") / "chord.wav"
    write_audio_wav(path, x[:, None], RATE)
    return path, x


def read_csv(path):
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_features_taper_none_equals_the_authors_formulas(chord, tmp_path):
    from live.media import load_audio

    path, _ = chord
    x, _ = load_audio(path, mono=True)  # the samples as stored (16-bit)
    out = tmp_path / "f.csv"
    assert main(["features", str(path), "-o", str(out), "--taper", "none"]) == 0
    rows = read_csv(out)
    prev = None
    for i, row in enumerate(rows[:-1]):  # the last window is zero-padded past the end
        start = round(i * RATE / 20)
        window = x[start:start + 2205].astype(np.float64)
        ref, amps = authors_features(window, RATE)
        for name, value in ref.items():
            assert row[name] == pytest.approx(value, rel=1e-6, abs=1e-9), (i, name)
        flux = 0.0 if prev is None else float(np.sum(np.abs(amps - prev)))  # util.flux
        assert row["flux"] == pytest.approx(flux, rel=1e-6, abs=1e-9)
        prev = amps
    hann = tmp_path / "h.csv"
    assert main(["features", str(path), "-o", str(hann)]) == 0
    assert read_csv(hann)[3]["centroid"] != pytest.approx(rows[3]["centroid"], rel=1e-6)  # Hann is the default


def test_sweep_refuses_a_bare_layer_number_showing_both_spellings(tmp_path, capsys):
    code = main(["sweep", "--operator", "R1", "--params", "0,1", "--layers", "40", "-o", str(tmp_path / "s.png"),
                 "--model", "tiny"])
    err = capsys.readouterr().err
    assert code == 2 and '"latent@40"' in err and '"unet:40"' in err
    from live.cli.sweep import parse_layer

    assert parse_layer("latent@40") == ("latent", 40) and parse_layer("unet:3") == (3, None)
    with pytest.raises(ValueError, match="needs its step"):
        parse_layer("latent")


def test_sweep_figure_on_tiny_and_its_errors(tmp_path, capsys):
    out = tmp_path / "fig2.png"
    assert main(["sweep", "--figure", "2", "--model", "tiny", "--steps", "2", "-o", str(out)]) == 0
    assert Image.open(out).width > 400
    assert main(["sweep", "--figure", "2", "--operator", "add", "-o", str(out)]) == 2
    assert "leave out --operator" in capsys.readouterr().err
    assert main(["sweep", "-o", str(out)]) == 2
    assert "--figure 1|2|3|4" in capsys.readouterr().err
    assert main(["sweep", "--figure", "9", "--model", "tiny", "-o", str(out)]) == 2
    assert "the paper's figures are 1, 2, 3, 4" in capsys.readouterr().err


# -- render: the preset's window, --init-image, --prompts ------------------------------------

def quick_preset(folder, pipeline, **settings):
    from live.control.presets import Preset, save_preset

    settings = {"steps": 4, "guidance": 1.0, **settings}
    if pipeline == "chain":
        settings.setdefault("strength", 0.5)
    preset = Preset(name=f"quick-{pipeline}", pipeline=pipeline, model="tiny", settings=settings, taper="none")
    return str(save_preset(preset, folder / f"quick-{pipeline}.toml"))


def frames(job):
    from live.cli.render import AudioFrames

    return AudioFrames(job)


def test_render_uses_the_presets_window(chord, tmp_path):
    from engine.features import analyze
    from live.cli.render import RenderJob

    from live.media import load_audio

    path, _ = chord
    src = frames(RenderJob(tmp_path / "o.mp4", preset=quick_preset(tmp_path, "walk"), audio=path))
    x, _ = load_audio(path, mono=True)
    expected = analyze(x, RATE, fps=20, taper="none")
    np.testing.assert_allclose(src.table.values, expected.values, rtol=1e-5, atol=1e-6)
    assert src.pipe.fps == 20.0


def test_render_init_image_starts_the_chain_from_it(chord, tmp_path):
    from live.cli.render import RenderError, RenderJob, check_job

    path, _ = chord
    image = tmp_path / "init.png"
    Image.fromarray(np.full((64, 64, 3), (250, 30, 30), np.uint8)).save(image)
    preset = quick_preset(tmp_path, "chain")
    from engine.images import load_image

    with_init = frames(RenderJob(tmp_path / "o.mp4", preset=preset, audio=path, init_image=image))
    plain = frames(RenderJob(tmp_path / "o.mp4", preset=preset, audio=path))
    torch.testing.assert_close(with_init.pipe._image, load_image(image))  # frame 0 is img2img of it
    assert plain.pipe._image is None  # frame 0 from the prompt
    assert not torch.allclose(with_init.frame(0), plain.frame(0))
    assert "init_image" in with_init.manifest and "init_image" not in plain.manifest
    with pytest.raises(RenderError, match="is for chain and stream presets"):
        frames(RenderJob(tmp_path / "o.mp4", preset=quick_preset(tmp_path, "walk"), audio=path, init_image=image))
    with pytest.raises(RenderError, match="is not a file"):
        check_job(RenderJob(tmp_path / "o.mp4", init_image=tmp_path / "missing.png"))


def test_render_prompts_schedule_replaces_the_presets_prompt(chord, tmp_path):
    from live.cli.render import RenderError, RenderJob, check_job

    path, _ = chord
    preset = quick_preset(tmp_path, "walk", prompt_to="somewhere else")
    src = frames(RenderJob(tmp_path / "o.mp4", preset=preset, audio=path, fps=10.0,
                           prompts="0:starry night|0.2:forest with river|0.4:the sea"))
    config = src.pipe.config
    assert config.prompts == [[0.0, "starry night"], [0.2, "forest with river"], [0.4, "the sea"]]
    assert config.prompt_to is None and src.pipe.fps == 10.0
    enc = src.pipe.model.encode_prompt
    torch.testing.assert_close(src.pipe.condition(1), torch.lerp(enc(["starry night"]), enc(["forest with river"]),
                                                                 0.5))
    assert src.manifest["prompts"].startswith("0:starry night")
    with pytest.raises(RenderError, match="bad --prompts"):
        check_job(RenderJob(tmp_path / "o.mp4", prompts="starry night"))


def test_osc_operator_r1_and_layer_spellings_reach_the_show():
    """/netbend/bend/1/operator s R1 works because R1..R4 are operators in the one registry;
    OSC keeps integer layers as U-Net indices and also takes latent@N."""
    from live.control.limits import ModelLimits
    from live.control.state import Command, ShowState, apply

    layers = ["conv_in", "down.0", "mid", "up.0", "conv_out"]
    limits = ModelLimits(layers, {"latent": 4, **{name: 64 for name in layers}})
    state = ShowState(prompt="fog")
    for address, args in [("/netbend/bend/1/operator", ("R1",)), ("/netbend/bend/1/layer", ("latent@40",)),
                          ("/netbend/bend/1/param", (1.5,))]:
        state = apply(state, Command(address, args), limits)
    bend = state.slots[0].bend
    assert (bend.operator, bend.layer, bend.step, bend.param) == ("R1", "latent", frozenset({40}), 1.5)
    state = apply(state, Command("/netbend/bend/1/layer", (2,)), limits)
    assert state.slots[0].bend.layer == "mid"  # an int over OSC is a U-Net index
