"""`netbend render --ray` and `sweep --ray` on a real local Ray cluster (two CPU workers),
started once for this module: the frames must be the local render's, bit for bit, even
when a worker is killed in the middle."""
import logging
import os
import re
import signal
import sys

import numpy as np
import pytest
from PIL import Image

import ray  # the test extra installs it: these tests must run in CI, not skip
from live.cli import main
from live.cli.cluster import render_on_ray
from live.cli.render import RenderJob, render
from live.media import probe
from helpers_ray import start_local_ray
from test_render import quick_walk_preset, tone_file

FRAMES = 24  # 1.2 s at 20 fps


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of two CPUs for the whole module (a start costs ~10 s here)."""
    context = start_local_ray(num_cpus=2, attempts=2)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """A walk preset, its audio, and its local render's frames (the reference)."""
    folder = tmp_path_factory.mktemp("walk")
    preset = quick_walk_preset(folder)
    audio = tone_file(folder / "tone.wav", FRAMES / 20)
    local = folder / "local"
    render(RenderJob(output=folder / "local.mp4", audio=audio, model="tiny", preset=str(preset), frames_dir=local,
                     progress=False))
    return preset, audio, local


def frames_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("frame_*.png"))}


def test_walk_on_two_workers_equals_the_local_render_and_resumes(cluster, walk, tmp_path):
    preset, audio, local = walk
    seen = set()
    job = RenderJob(output=tmp_path / "ray.mp4", audio=audio, model="tiny", preset=str(preset),
                    frames_dir=tmp_path / "frames", progress=False)
    [result] = render_on_ray([job], address=cluster, chunk=3,
                             on_frame=lambda render, i, worker: seen.add(worker.where["pid"]))
    assert result.frames == result.rendered == FRAMES
    assert len(seen) == 2, "both workers should have rendered frames"
    assert frames_of(tmp_path / "frames") == frames_of(local)
    info = probe(tmp_path / "ray.mp4")
    assert info.frames == FRAMES and info.audio_codec == "aac"

    for i in (5, 6, 17):  # a re-run renders only what is missing, and the same frames again
        (tmp_path / "frames" / f"frame_{i:06d}.png").unlink()
    [again] = render_on_ray([job], address=cluster, chunk=3)
    assert again.rendered == 3
    assert frames_of(tmp_path / "frames") == frames_of(local)


def test_a_worker_killed_mid_render_still_gives_the_whole_identical_render(cluster, walk, tmp_path, caplog):
    preset, audio, local = walk
    killed = []

    def kill_once(render, i, worker):
        if not killed and render.rendered == 4:
            killed.append(worker.where["pid"])
            os.kill(worker.where["pid"], signal.SIGKILL)

    job = RenderJob(output=tmp_path / "ray.mp4", audio=audio, model="tiny", preset=str(preset),
                    frames_dir=tmp_path / "frames", progress=False)
    with caplog.at_level(logging.WARNING, logger="netbend.cluster"):
        [result] = render_on_ray([job], address=cluster, chunk=2, on_frame=kill_once)
    assert killed and "lost" in caplog.text
    assert result.frames == FRAMES and probe(tmp_path / "ray.mp4").frames == FRAMES
    assert frames_of(tmp_path / "frames") == frames_of(local)


def test_two_renders_in_one_call_both_finish(cluster, walk, tmp_path, capsys):
    preset, audio, local = walk
    other = tone_file(tmp_path / "other.wav", 0.5)
    out = tmp_path / "videos"
    out.mkdir()
    # `--ray a.wav b.wav`: the first file is not taken for an address
    code = main(["render", "--ray", str(audio), str(other), "-o", str(out), "--model", "tiny",
                 "--preset", str(preset), "--frames-dir", str(tmp_path / "frames"), "-q"])
    assert code == 0, capsys.readouterr().err
    assert probe(out / "tone.mp4").frames == FRAMES and probe(out / "other.mp4").frames == 10
    assert frames_of(tmp_path / "frames" / "tone") == frames_of(local)


def test_a_stream_render_from_a_batch_file_is_one_task_and_equals_local(cluster, tmp_path, capsys):
    audio = tone_file(tmp_path / "short.wav", 0.5)
    render(RenderJob(output=tmp_path / "local.mp4", audio=audio, model="tiny", preset="live-colour-cycle",
                     frames_dir=tmp_path / "local", progress=False))
    batch = tmp_path / "jobs.toml"
    batch.write_text('[[render]]\naudio = "short.wav"\noutput = "stream.mp4"\npreset = "live-colour-cycle"\n'
                     'frames_dir = "stream"\n')
    assert main(["render", "--ray", cluster, "--jobs", str(batch), "--model", "tiny", "-q"]) == 0, \
        capsys.readouterr().err
    assert probe(tmp_path / "stream.mp4").frames == 10
    assert frames_of(tmp_path / "stream") == frames_of(tmp_path / "local")


def test_a_sweep_on_ray_equals_the_local_sheet(cluster, tmp_path):
    args = ["sweep", "--preset", "default", "--model", "tiny", "--operator", "multiply", "--params", "0,2.5",
            "--layers", "mid,latent@1"]
    assert main([*args, "-o", str(tmp_path / "local.png")]) == 0
    assert main([*args, "-o", str(tmp_path / "ray.png"), "--ray", cluster]) == 0
    local = np.asarray(Image.open(tmp_path / "local.png"))
    assert np.array_equal(local, np.asarray(Image.open(tmp_path / "ray.png")))


def test_a_worker_without_the_model_is_named_with_the_missing_file(cluster, walk, tmp_path, capsys):
    preset, audio, _ = walk
    missing = tmp_path / "nowhere" / "model.safetensors"
    code = main(["render", str(audio), "--ray", cluster, "-o", str(tmp_path / "x.mp4"), "--model", str(missing),
                 "--preset", str(preset), "-q"])
    err = capsys.readouterr().err
    # worker 1 is asked first; worker 2 answers when 1 has not come back from the kill test above
    assert code == 2 and re.search(r"on Ray worker [12] on ", err) and "pid" in err and str(missing) in err, err
    assert not (tmp_path / "x.mp4").exists() and not any(tmp_path.glob(".*frames"))


def test_an_unreachable_address_fails_fast_and_clearly(walk, tmp_path, capsys):
    preset, audio, _ = walk
    code = main(["render", str(audio), "--ray", "127.0.0.1:9", "-o", str(tmp_path / "x.mp4"), "--model", "tiny",
                 "--preset", str(preset), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Ray cluster at '127.0.0.1:9'" in err and "ray start --head" in err


def test_without_ray_installed_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code = main(["sweep", "--model", "tiny", "--operator", "multiply", "--params", "1", "-o",
                 str(tmp_path / "s.png"), "--ray"])
    assert code == 2 and "pip install -e '.[cluster]'" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()
