"""The render loop on the tiny model: commands at frame boundaries, no crash on a bad
frame, presets recalled without a black frame, takes recorded and replayed in time."""
import os
import threading
import time

import numpy as np
import pytest
import torch

from live.control.state import Command, ShowState
from live.show.disk import DiskWorker
from live.show.show import Show
from live.control.takes import TakePlayer, load_take
from helpers_show import Tone, pipe  # noqa: F401  (pipe: the fixture)


def make_show(pipe, **kw):
    kw.setdefault("disk", DiskWorker(inline=True))  # file work at once: these tests are about order, not threads
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
    real_decode = pipe.decode_latent  # the pipeline binds its VAE pass at construction (back-ends)
    monkeypatch.setattr(pipe, "decode_latent", lambda z: real_decode(z) * float("nan"))
    assert show.frame() is None and show.frame() is None  # NaN frames are not published
    assert sum("NaN" in r.message for r in caplog.records) == 1  # logged once
    monkeypatch.setattr(pipe, "decode_latent", real_decode)
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


def test_takes_record_the_input_audio_and_render_with_it(pipe, tmp_path):
    from live.media import probe
    from live.cli.render import RenderJob, render

    source = Tone(22050)  # AudioInput's read_since itself is tested on PortAudio in test_audio.py
    show, _, _ = make_show(pipe, audio_source=source)
    show.start_recording(tmp_path / "take")
    recording_from = show.recording.audio_position  # the sample the take's audio starts at
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


# ------------------------------------------------------------------ bugs of issue 10


class NoFeaturesYet:
    """A feature thread that has not produced its first frame (latest() is None)."""

    def latest(self):
        return None


def test_a_show_that_starts_before_the_first_feature_frame_renders(pipe):
    show, _, errors = make_show(pipe, features=NoFeaturesYet())
    frame = show.frame()
    assert frame is not None and not errors
    assert show.stats()["frame_errors"] == 0
    show.submit(Command("/netbend/bend/1/operator", ("add",)))
    show.submit(Command("/netbend/bend/1/feature", ("rms",)))  # a mapping with no features: the value 0
    assert show.frame() is not None and show.stats()["frame_errors"] == 0


def test_refused_commands_are_not_counted_as_frame_errors(pipe):
    show, _, errors = make_show(pipe)
    show.submit(Command("/netbend/bend/1/layer", ("mid",)))  # bend 1 is empty: refused
    assert show.frame() is not None and len(errors) == 1
    stats = show.stats()
    assert stats["frame_errors"] == 0 and stats["commands_refused"] == 1


def test_a_preset_fade_keeps_the_old_chain_in_order(pipe, tmp_path):
    from engine.bends import Bend
    from live.control.presets import Preset, save_preset

    now = [0.0]
    show, _, errors = make_show(pipe, clock=lambda: now[0])
    for n, (op, layer, param) in enumerate([("add", "mid", 0.4), ("multiply", "up.0", 2.0),
                                            ("add", "down.1", 0.2)], start=1):
        show.submit(Command(f"/netbend/bend/{n}/operator", (op,)))
        show.submit(Command(f"/netbend/bend/{n}/layer", (layer,)))
        show.submit(Command(f"/netbend/bend/{n}/param", (param,)))
    show.frame()
    before = [(b.operator, b.layer) for b in pipe.bends]
    empty = Preset(name="bare", pipeline="stream", description="", model="tiny",
                   settings={"prompt": "bare"}, bends=[Bend("multiply", "conv_out", 1.0)], mappings=[None])
    path = save_preset(empty, tmp_path / "bare.toml")
    show.submit(Command("/netbend/preset/load", (str(path),)))
    now[0] += 0.1
    show.frame()
    now[0] += 0.1  # a fifth of the way into the fade: the old bends fading out, in their order
    show.frame()
    assert not errors
    fading = [(b.operator, b.layer) for b in pipe.bends if (b.operator, b.layer) in before]
    assert fading == before


def test_audio_features_go_out_at_their_own_rate_frozen_or_slow(pipe):
    """Before the fix they went out at frame boundaries: below --features-hz whenever the
    render ran slower, and not at all while no frame was drawn."""
    from live.show.remote_control import FeatureStream

    class Server:
        sent = []

        def send_features(self, frame, extra):
            self.sent.append((frame, extra))

    show, _, _ = make_show(pipe)
    show.submit(Command("/netbend/freeze", (1,)))
    assert show.frame() is None and show.state.frozen
    stream = FeatureStream(Server(), show, hz=40.0).start()
    time.sleep(1.0)  # no frame drawn in this second
    stream.stop()
    assert 30 <= len(Server.sent) <= 42, len(Server.sent)
    assert all("rms" in frame.values for frame, _ in Server.sent)


def test_a_slot_recalled_by_key_is_recorded_by_name_and_replays_without_slots(pipe, tmp_path):
    show, _, errors = make_show(pipe, take_root=tmp_path)
    show.start_recording(tmp_path / "take")
    show.submit(Command("/netbend/preset/load", (1,), source="key"))
    show.frame()
    show.stop_recording()
    assert not errors and show.state.preset == "live-stained-glass"
    take = load_take(tmp_path / "take")
    assert [(c.address, c.args) for c in take.commands] == [("/netbend/preset/load", ("live-stained-glass",))]

    bare = Show(pipe, take.start_state, error=lambda a, r: errors.append((a, r)),  # no slots, as render --take
                disk=DiskWorker(inline=True))
    for c in take.commands:
        bare.submit(Command(c.address, c.args, c.time, "replay"))
    bare.frame()
    assert not errors and bare.state.preset == "live-stained-glass"


def test_replaying_a_take_does_not_start_new_takes(pipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    show, _, _ = make_show(pipe, take_root=tmp_path / "takes")
    show.submit(Command("/netbend/record/start", (), source="key"))
    show.submit(Command("/netbend/prompt", ("rain",), source="key"))
    show.frame()
    first = show.recorder.folder
    show.submit(Command("/netbend/record/stop", (), source="key"))
    show.frame()
    take = load_take(first)
    assert [c.address for c in take.commands] == ["/netbend/prompt"]  # record/* is about the take, not the show

    # an older take that still holds record/start and record/stop
    replayed, _, errors = make_show(pipe, take_root=tmp_path / "takes")
    for address in ("/netbend/record/start", "/netbend/prompt", "/netbend/record/stop"):
        replayed.submit(Command(address, ("fog",) if address.endswith("prompt") else (), source="replay"))
    replayed.frame()
    assert not errors and replayed.state.prompt == "fog"
    assert sorted(p.name for p in (tmp_path / "takes").iterdir()) == [first.name]
    assert not replayed.state.recording


def test_the_hud_names_the_preset_prompt_last_error_and_labels_fps(pipe):
    show, _, _ = make_show(pipe)
    show.submit(Command("/netbend/preset/load", (1,)))
    show.frame()
    show.submit(Command("/netbend/bend/8/layer", ("mid",)))
    show.frame()
    text = "\n".join(show.hud_lines())
    assert "preset live-stained-glass" in text
    assert f"prompt {show.state.prompt}" in text
    assert "error /netbend/bend/8/layer: " in text and "bend 8 is empty" in text
    fps_lines = [line for line in show.hud_lines() if "fps" in line]
    assert len(fps_lines) == 1 and fps_lines[0].lstrip().startswith("render")


def test_preset_files_are_read_and_written_off_the_render_thread(pipe, tmp_path, monkeypatch):
    import live.control.presets as presets

    real_load, real_save = presets.load_preset, presets.save_preset
    threads = []

    def slow_load(name):
        threads.append(threading.current_thread())
        time.sleep(1.5)
        return real_load(name)

    def slow_save(preset, path):
        threads.append(threading.current_thread())
        time.sleep(1.5)
        return real_save(preset, tmp_path / "saved.toml")

    monkeypatch.setattr(presets, "load_preset", slow_load)
    monkeypatch.setattr(presets, "save_preset", slow_save)
    show, echoed, errors = make_show(pipe, disk=None)  # the live show's default: a disk thread
    show.frame()
    show.submit(Command("/netbend/preset/load", (1,)))
    show.submit(Command("/netbend/prompt", ("after the preset",)))
    started = time.monotonic()
    assert show.frame() is not None
    show.submit(Command("/netbend/preset/save", ("mine",)))
    assert show.frame() is not None
    assert time.monotonic() - started < 1.4  # neither a 1.5 s read nor a 1.5 s write held a frame
    deadline = time.monotonic() + 5
    while "/netbend/preset/save" not in [c.address for c in echoed] and time.monotonic() < deadline:
        show.frame()
    assert show.state.preset == "live-stained-glass"  # applied in order: the preset, then the prompt
    assert show.state.prompt == "after the preset"
    assert threading.current_thread() not in threads and len(threads) == 2
    assert [c.address for c in echoed][-3:] == ["/netbend/preset/load", "/netbend/prompt", "/netbend/preset/save"]
    assert not errors
    show.close()


def test_take_files_are_synced_off_the_render_thread(tmp_path, monkeypatch):
    import live.control.takes as takes
    from engine.features import FEATURE_NAMES

    synced_on = []
    real_fsync = os.fsync

    def slow_fsync(fd):
        synced_on.append(threading.current_thread())
        time.sleep(0.3)
        real_fsync(fd)

    monkeypatch.setattr(takes.os, "fsync", slow_fsync)
    clock = [0.0]
    recorder = takes.TakeRecorder(tmp_path / "t", start_state=ShowState(), feature_names=FEATURE_NAMES,
                                  clock=lambda: clock[0])
    started = time.monotonic()
    for i in range(20):
        clock[0] += 0.1  # two seconds of show: several flushes due
        recorder.command(Command("/netbend/seed", (i,), time=clock[0]))
    assert time.monotonic() - started < 0.2
    recorder.close()
    assert synced_on and threading.current_thread() not in synced_on
    assert [c.args[0] for c in load_take(tmp_path / "t").commands] == list(range(20))


def test_default_key_slots_are_presets_that_can_run_live():
    from live.control.presets import load_preset
    from live.show.app import default_slots

    slots = default_slots()
    assert 1 <= len(slots) <= 9
    assert all(load_preset(name).pipeline == "stream" for name in slots)


def test_osc_gain_reaches_the_audio_source(pipe, tmp_path):
    from live.audio.features import FeatureThread
    from live.audio.filesource import FileSource
    from live.media import write_audio_wav

    write_audio_wav(tmp_path / "a.wav", np.zeros((4410, 2), np.float32), 44100)
    source = FileSource(tmp_path / "a.wav")
    show, echoed, _ = make_show(pipe, features=FeatureThread(source))
    show.submit(Command("/netbend/gain", (6.0,)))
    show.frame()
    assert source.gain_db == 6.0 and show.state.gain_db == 6.0


def test_mapped_values_name_the_slot_whose_mapping_gave_them_even_during_a_preset_fade(pipe):
    """/netbend/bend/<n>/value paired slots with the rendered chain by position; during a
    preset fade the old preset's leaving bends come first, so slot 1 reported one of them."""
    from live.show.remote_control import mapped_values

    show, _, errors = make_show(pipe)
    for address, args in [("/netbend/bend/1/operator", ("rotate",)), ("/netbend/bend/1/layer", ("mid",)),
                          ("/netbend/bend/1/feature", ("rms",)), ("/netbend/bend/1/scale", (5.0, 6.0))]:
        show.submit(Command(address, args))
    show.frame()
    assert mapped_values(show) == {"/netbend/bend/1/value": pytest.approx(5.0)}  # silence: the low end
    show.submit(Command("/netbend/preset/load", (1,)))  # live-stained-glass: binary (mapped), sobel
    show.frame()
    assert show.fade.active and show.last_bends[0].operator == "rotate"  # the leaving bend first
    assert mapped_values(show) == {"/netbend/bend/1/value": pytest.approx(0.6)}  # binary's, not rotate's 5.0
    assert not errors
    show.close()
