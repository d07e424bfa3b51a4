"""The render loop on the tiny model: commands at frame boundaries, no crash on a bad
frame, presets recalled without a black frame, takes recorded and replayed in time."""
import threading
import time

import numpy as np
import pytest
import torch

from engine.stream import StreamConfig, StreamPipeline
from live.control.state import Command, ShowState, state_from_preset
from live.control.presets import load_preset
from live.show.show import Show
from live.control.takes import TakePlayer, load_take


@pytest.fixture
def pipe(tiny):
    p = StreamPipeline(tiny, StreamConfig(prompt="neon"))
    p.prepare()
    yield p
    p.bender.remove()


def make_show(pipe, **kw):
    echoed, errors = [], []
    show = Show(pipe, ShowState(prompt="neon"), echo=echoed.append, error=lambda a, r: errors.append((a, r)),
                slots=["live-stained-glass", "live-erosion-texture"], **kw)
    return show, echoed, errors


def test_commands_apply_at_frame_boundaries_and_echo(pipe):
    show, echoed, errors = make_show(pipe)
    show.submit(Command("/netbend/bend/1/operator", ("rotate",)))
    show.submit(Command("/netbend/bend/1/layer", ("mid",)))
    assert show.state.slots[0] is None  # nothing happens between frames
    frame = show.frame()
    assert show.state.slots[0].bend.operator == "rotate" and pipe.bends[0].layer == "mid"
    assert [c.address for c in echoed] == ["/netbend/bend/1/operator", "/netbend/bend/1/layer"]
    assert frame.image.shape == (64, 64, 3) and frame.image.dtype == np.uint8
    assert not errors


def test_bad_commands_are_answered_and_change_nothing(pipe):
    show, echoed, errors = make_show(pipe)
    show.frame()
    before = show.state
    for c in [Command("/netbend/bend/1/layer", ("mid",)), Command("/netbend/strength", (float("nan"),)),
              Command("/netbend/preset/load", ("no-such-preset",)), Command("/netbend/preset/load", (7,))]:
        show.submit(c)
    assert show.frame() is not None
    assert show.state == before and not echoed
    assert [a for a, _ in errors] == ["/netbend/bend/1/layer", "/netbend/strength", "/netbend/preset/load",
                                      "/netbend/preset/load"]
    assert "bend 1 is empty" in errors[0][1] and "slot 7 is empty" in errors[3][1]


def test_a_failing_frame_keeps_the_show_running(pipe, monkeypatch, caplog):
    show, _, _ = make_show(pipe)
    good = show.frame()
    real_decode = pipe.model.decode_latent
    monkeypatch.setattr(pipe.model, "decode_latent", lambda z: real_decode(z) * float("nan"))
    assert show.frame() is None and show.frame() is None  # NaN frames are not published
    assert sum("NaN" in r.message for r in caplog.records) == 1  # logged once
    monkeypatch.setattr(pipe.model, "decode_latent", real_decode)
    after = show.frame()
    assert after is not None and after.index == good.index + 1
    assert torch.isfinite(pipe._latent).all()  # the feedback loop restarted from the last good frame


def test_preset_recall_crossfades_without_a_black_frame(pipe):
    show, _, errors = make_show(pipe, clock=time.monotonic)
    show.submit(Command("/netbend/preset/load", (1,)))
    frames = [show.frame() for _ in range(6)]
    assert not errors and show.state.preset == "live-stained-glass"
    assert all(f is not None and f.image.mean() > 5 for f in frames)


def test_record_and_replay_give_the_same_commands_with_the_same_timing(pipe, tmp_path):
    show, _, _ = make_show(pipe, take_root=tmp_path)
    stop = threading.Event()
    render = threading.Thread(target=show.run, args=(stop,))
    render.start()
    try:
        show.start_recording(tmp_path / "take1")
        t0 = time.monotonic()
        script = [(0.0, "/netbend/bend/1/operator", "add"), (0.3, "/netbend/bend/1/param", 0.5),
                  (0.5, "/netbend/bend/1/param", 0.9), (0.9, "/netbend/prompt", "rain")]
        for at, address, arg in script:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            show.submit(Command(address, (arg,), time.monotonic()))
        time.sleep(0.3)
        show.stop_recording()
        frame_time = 1.0 / max(show.fps, 1.0)
        take = load_take(tmp_path / "take1")
        assert [c.address for c in take.commands] == [s[1] for s in script]

        # replay into a fresh show (same start state), recording what it applies
        show2, _, _ = make_show(pipe, take_root=tmp_path)
        show2.start_recording(tmp_path / "take2")
        stop.set(); render.join()
        stop2 = threading.Event()
        render2 = threading.Thread(target=show2.run, args=(stop2,))
        render2.start()
        player = TakePlayer(take, show2.submit).start()
        deadline = time.monotonic() + 5
        while not player.done and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        stop2.set(); render2.join()
        replayed = load_take(tmp_path / "take2")
    finally:
        stop.set()
        render.join()
    assert [(c.address, c.args) for c in replayed.commands] == [(c.address, c.args) for c in take.commands]
    rel1 = np.diff([c.time for c in take.commands])
    rel2 = np.diff([c.time for c in replayed.commands])
    assert np.abs(rel1 - rel2).max() <= frame_time + 0.02, (rel1, rel2, frame_time)


class ToneInput:
    """Stands in for AudioInput's take interface (read_since is tested on PortAudio in
    test_audio.py): a 440 Hz tone arriving in real time."""

    sample_rate = 22050

    def __init__(self):
        self.start = time.monotonic()

    @property
    def frames_received(self) -> int:
        return int((time.monotonic() - self.start) * self.sample_rate)

    def read_since(self, position):
        now = self.frames_received
        t = np.arange(position, now) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), now


def test_takes_record_the_input_audio_and_render_with_it(pipe, tmp_path):
    from live.media import probe
    from live.cli.render import RenderJob, render

    source = ToneInput()
    show, _, _ = make_show(pipe, audio_source=source)
    show.start_recording(tmp_path / "take")
    recording_from = show._audio_position  # the sample the take's audio starts at
    stop = threading.Event()
    render_thread = threading.Thread(target=show.run, args=(stop,))
    render_thread.start()
    time.sleep(1.5)
    stop.set()
    render_thread.join()
    heard = source.frames_received - recording_from
    take = load_take(tmp_path / "take")
    assert take.audio_rate == 22050
    assert abs(len(take.audio) - heard) < 0.2 * 22050  # all of it, up to the last frame's read
    t = np.arange(len(take.audio)) / 22050
    assert np.allclose(take.audio, 0.3 * np.sin(2 * np.pi * 440 * (t + recording_from / 22050)), atol=1e-4)
    out = tmp_path / "take.mp4"
    render(RenderJob(output=out, take=tmp_path / "take", model="tiny", fps=10, progress=False))
    info = probe(out)
    assert info.audio_codec == "aac" and info.audio_duration == pytest.approx(len(take.audio) / 22050, abs=0.1)
