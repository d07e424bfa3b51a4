"""`netbend render`, `sweep`, `features` and `presets` end to end on the tiny model: real
audio files in, real MP4s out, read back to check them."""
import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from engine.tiny import tiny_model
from engine.mappings import MappedBends
from engine.pipelines import make_pipeline
from live.cli import main
from live.media import probe, write_audio_wav
from live.control.preset_files import list_presets
from live.control.presets import load_preset
from live.cli.render import RenderJob, render

RATE = 22050


def tone_file(path, seconds, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    # a tone that swells, so rms-mapped bends move
    samples = (0.5 * np.sin(2 * np.pi * 330 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    write_audio_wav(path, np.stack([samples, samples], axis=1), rate)
    return path


@pytest.fixture(scope="module")
def five_seconds(tmp_path_factory):
    return tone_file(tmp_path_factory.mktemp("audio") / "five.wav", 5.0)


def test_render_five_seconds_gives_100_frames_and_5s_of_audio(five_seconds, tmp_path):
    out = tmp_path / "five.mp4"
    code = main(["render", str(five_seconds), "-o", str(out), "--model", "tiny", "--preset", "default", "-q"])
    assert code == 0
    info = probe(out)
    assert info.frames == 100
    assert info.fps == pytest.approx(20.0)
    assert (info.width, info.height) == (64, 64)
    assert info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.audio_codec == "aac"
    assert info.audio_duration == pytest.approx(5.0, abs=0.05)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary frames or partial files left"


def test_render_on_the_compile_backend_matches_eager(tmp_path, monkeypatch):
    """The same render through torch.compile'd U-Net segments (aot_eager here: inductor's C++
    builds take minutes on two cores) gives the eager render's frames."""
    monkeypatch.setenv("NETBEND_COMPILE_BACKEND", "aot_eager")
    audio = tone_file(tmp_path / "short.wav", 0.5)
    frames = {}
    for backend in ("eager", "compile"):
        job = RenderJob(output=tmp_path / f"{backend}.mp4", audio=audio, model="tiny", preset="live-colour-cycle",
                        frames_dir=tmp_path / backend, progress=False, backend=backend)
        assert render(job).frames == 10
        frames[backend] = [np.asarray(Image.open(f), dtype=np.int16) for f in sorted((tmp_path / backend).glob("*.png"))]
    assert len(frames["compile"]) == len(frames["eager"]) == 10
    worst = max(np.abs(a - b).max() for a, b in zip(frames["eager"], frames["compile"]))
    assert worst <= 3, f"compiled frames differ from eager by up to {worst}/255"


def test_frame_count_is_ceil_of_duration_times_fps(tmp_path):
    audio = tone_file(tmp_path / "odd.wav", 1.23)
    out = tmp_path / "odd.mp4"
    result = render(RenderJob(output=out, audio=audio, model="tiny", fps=12.5, progress=False))
    assert result.frames == math.ceil(1.23 * 12.5) == probe(out).frames


@pytest.mark.parametrize("name", [name for name, _ in list_presets()])
def test_every_shipped_preset_renders_a_frame_on_tiny(name, tiny):
    preset = load_preset(name)
    model = tiny_model(vae="full") if preset.vae == "full" else tiny
    pipe = make_pipeline(preset.pipeline, model, preset.config())
    driven = MappedBends(preset.bends, preset.mappings)
    feats = {n: 0.5 for n in ("rms", "centroid", "spread", "skewness", "kurtosis", "flux", "bass", "mid", "high",
                               "onset", "bass_ratio", "mid_ratio", "high_ratio", "rms_ratio", "tempo")}
    try:
        pipe.bends = driven.update(feats, 0.05)
        frame = pipe.frame(0, 2)
    finally:
        pipe.bender.remove()
    assert frame.shape == (1, 3, 64, 64) and torch.isfinite(frame).all()


def quick_walk_preset(folder):
    """The paper's piano preset with 4 DDIM steps (and its bend at step 3), so CI renders it fast."""
    from dataclasses import replace

    from live.control.presets import save_preset

    paper = load_preset("paper-piano-mesh")
    quick = replace(paper, name="quick-walk", settings={**paper.settings, "steps": 4},
                    bends=[replace(b, step=3) for b in paper.bends])
    return save_preset(quick, folder / "quick-walk.toml")


def test_interrupted_render_resumes_from_frames_on_disk(five_seconds, tmp_path, monkeypatch):
    import engine.images

    frames = tmp_path / "frames"
    out = tmp_path / "resumed.mp4"
    real_save = engine.images.save_png
    calls = {"n": 0}

    def dying_save(image, path):
        if calls["n"] == 12:
            raise KeyboardInterrupt  # the VJ hits ctrl-c at frame 12
        calls["n"] += 1
        real_save(image, path)

    monkeypatch.setattr(engine.images, "save_png", dying_save)
    preset = quick_walk_preset(tmp_path)
    job = RenderJob(output=out, audio=five_seconds, model="tiny", preset=str(preset), frames_dir=frames,
                    span=(0.0, 2.0), progress=False)  # 40 frames
    with pytest.raises(KeyboardInterrupt):
        render(job)
    assert not out.exists()
    assert len(list(frames.glob("frame_*.png"))) == 12
    monkeypatch.setattr(engine.images, "save_png", real_save)
    first_12 = [(frames / f"frame_{i:06d}.png").read_bytes() for i in range(12)]
    result = render(job)
    assert result.rendered == 28 and probe(out).frames == 40
    # the walk is computed per frame, so the resumed render equals an uninterrupted one
    again = tmp_path / "fresh"
    render(RenderJob(output=tmp_path / "fresh.mp4", audio=five_seconds, model="tiny", preset=str(preset),
                     frames_dir=again, span=(0.0, 2.0), progress=False))
    for i in (0, 11, 12, 39):
        assert (frames / f"frame_{i:06d}.png").read_bytes() == (again / f"frame_{i:06d}.png").read_bytes()
    assert first_12[11] == (frames / "frame_000011.png").read_bytes()


def test_frames_of_another_render_are_not_mixed_in(five_seconds, tmp_path):
    frames = tmp_path / "frames"
    render(RenderJob(output=tmp_path / "a.mp4", audio=five_seconds, model="tiny", frames_dir=frames,
                     span=(0.0, 1.0), progress=False))
    code = main(["render", str(five_seconds), "-o", str(tmp_path / "b.mp4"), "--model", "tiny", "-q",
                 "--preset", "live-stained-glass", "--seconds", "0:1", "--frames-dir", str(frames)])
    assert code == 2 and not (tmp_path / "b.mp4").exists()


@pytest.mark.parametrize("args, message", [
    (["missing.wav"], "no such file"),
    (["{text}"], "not a media file"),
    (["{wav}", "--preset", "no-such-preset"], "available"),
    (["{wav}", "--size", "100x64"], "multiples of 8"),
    (["{wav}", "--seconds", "3:1"], "START < END"),
    (["{wav}", "--seconds", "0:60"], "lasts"),
    (["{wav}", "--fps", "0"], "0 < fps"),
    (["{wav}", "--model", "no-such/model"], "download"),
    (["{wav}", "--model", "{text}"], ""),
    (["{wav}", "--backend", "fast"], "unknown --backend 'fast'; allowed: auto, eager, compile"),
])
def test_bad_inputs_fail_clearly_and_write_nothing(args, message, tmp_path, capsys):
    wav = tone_file(tmp_path / "ok.wav", 0.5)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    args = [a.format(wav=wav, text=text) for a in args]
    out = tmp_path / "out.mp4"
    code = main(["render", *args, "-o", str(out), "--model", "tiny", "-q"] if "--model" not in args
                else ["render", *args, "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("netbend: error: ") and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.wav", "ok.wav"]


def test_sweep_writes_a_labelled_sheet(tmp_path):
    from PIL import Image

    out = tmp_path / "sheet.png"
    code = main(["sweep", "--preset", "default", "--model", "tiny", "--operator", "multiply",
                 "--params", "0,2.5,-1", "--layers", "mid,up.1,latent@1", "-o", str(out)])
    assert code == 0
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert sheet.shape[0] > 3 * 64 and sheet.shape[1] > 4 * 64  # 3 rows x (original + 3 params)
    for row in range(3):  # rows start below the two label lines; cells are 64 px plus 4 px gaps
        y = 44 + row * 68
        cells = [sheet[y:y + 64, 110 + j * 68:174 + j * 68] for j in range(4)]
        # random weights pass little of a U-Net bend through to pixels; a latent bend shows plainly
        least = 5.0 if row == 2 else 0.05
        assert all(np.abs(cells[0] - c).mean() > least for c in cells[1:]), f"row {row}: bent cells should differ"


def test_sweep_rejects_a_bad_operator_before_loading_anything(tmp_path, capsys):
    assert main(["sweep", "--operator", "wobble", "--params", "1", "-o", str(tmp_path / "s.png")]) == 2
    assert "valid operators" in capsys.readouterr().err


def test_features_command_writes_table_and_plot(five_seconds, tmp_path):
    csv_path, png = tmp_path / "f.csv", tmp_path / "f.png"
    assert main(["features", str(five_seconds), "-o", str(csv_path), "--plot", str(png)]) == 0
    rows = list(csv.reader(csv_path.open()))
    assert len(rows) == 1 + 100 and "rms" in rows[0] and "centroid" in rows[0]
    assert png.stat().st_size > 10_000


def test_presets_command_lists_and_checks(capsys, tmp_path):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert "paper-piano-mesh" in listing and "walk" in listing
    assert main(["presets", "--check"]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\npipeline = "stream"\n[[bends]]\noperator = "rotat"\n')
    assert main(["presets", "--check", str(bad)]) == 2
    assert "bends[0].operator" in capsys.readouterr().out


def test_render_and_sweep_jobs_check_their_fields_when_made(tmp_path):
    """A wrong field fails when the job is made (a batch table, a Ray job), named, before
    anything is loaded or written."""
    from live.cli.render import RenderError
    from live.cli.sweep import SweepJob

    out = tmp_path / "o.mp4"
    for kwargs, message in [({"fps": 0}, r"bad --fps 0; allowed: 0 < fps <= 240"),
                            ({"fps": float("nan")}, "bad --fps"),
                            ({"size": (100, 64)}, "bad --size 100x64; .*multiples of 8"),
                            ({"size": (512,)}, r"bad --size \(512,\); give \(width, height\)"),
                            ({"span": (3.0, 1.0)}, "bad --seconds 3:1; need 0 <= START < END"),
                            ({"steps": 0}, "--steps must be 1..50"),
                            ({"backend": "fast"}, "unknown --backend 'fast'"),
                            ({"take": tmp_path / "t", "audio": tmp_path / "a.wav"}, "not both"),
                            ({"prompts": "starry night"}, "bad --prompts"),
                            ({"preset": " "}, "--preset must be")]:
        with pytest.raises(RenderError, match=message):
            RenderJob(output=out, **kwargs)
    assert RenderJob(output=out, size=[64, 64]).size == (64, 64)
    sheet = dict(output=tmp_path / "s.png", operator="multiply", params="0,1")
    for changes, message in [({"output": tmp_path / "s.jpg"}, "must end in .png"),
                             ({"params": "a,b"}, "bad --params"),
                             ({"operator": "wobble"}, "wobble"),
                             ({"layers": "3"}, "3"),
                             ({"size": (30, 30)}, "multiples of 8"),
                             ({"backend": "fast"}, "unknown --backend")]:
        with pytest.raises(ValueError, match=message):
            SweepJob(**{**sheet, **changes})
    assert list(tmp_path.iterdir()) == []


def test_one_size_rule_per_flag():
    from live.cli.build_engines import ENGINE_SIZE
    from live.checks import FRAME_SIZE, SizeRule
    from live.cli.render import RenderError, parse_frame_size

    assert parse_frame_size("512x384") == (512, 384) and parse_frame_size(None) is None
    with pytest.raises(RenderError, match="write WIDTHxHEIGHT"):
        parse_frame_size("512")
    assert FRAME_SIZE.check((4096, 8)) == (4096, 8)
    with pytest.raises(ValueError, match=r"bad --size '512x500'; engines have fixed shapes .* multiples of 64"):
        ENGINE_SIZE.parse("512x500")
    picture = SizeRule(multiple=1, smallest=2, largest=8192, example="1920x1080")
    assert picture.parse("1919x1080", "--output-size") == (1919, 1080)
    with pytest.raises(ValueError, match=r"bad --output-size '1x1080'; width and height must be 2..8192 pixels"):
        picture.parse("1x1080", "--output-size")
