"""The stream's stage-timing seam, ``StreamPipeline.step(timer=...)``: each stage is named
once, in order, as its work ends; the stages add up to the step; and a timed frame is the
same frame, bit for bit, as an untimed one."""
import time

import pytest
import torch

from engine.bends import Bend
from engine.stream import STAGES, StreamConfig, StreamPipeline

BENDS = [Bend("rotate", "mid", 0.7, opts={"plane": "R1"}), Bend("add", "latent", 0.05)]


def _config(latent_feedback: bool) -> StreamConfig:
    # every branch of step(): two steps, the noise floor and colour coherence on
    return StreamConfig(steps=2, noise_floor=0.05, color_coherence=0.5, latent_feedback=latent_feedback)


def test_each_stage_ends_after_its_own_work(tiny, monkeypatch):
    pipe = StreamPipeline(tiny, _config(latent_feedback=False), bends=BENDS)
    pipe.prepare()
    events = []
    for name, tag in (("encode_image", "vae.encode"), ("decode_latent", "vae.decode")):
        run = getattr(pipe, name)
        monkeypatch.setattr(pipe, name, lambda *a, run=run, tag=tag: (events.append(tag), run(*a))[1])
    forward = pipe.unet.forward
    monkeypatch.setattr(pipe.unet, "forward", lambda *a, **k: (events.append("unet.forward"), forward(*a, **k))[1])
    pipe.step(timer=events.append)
    assert events == ["vae.encode", "encode", "unet.forward", "unet.forward", "unet", "vae.decode", "decode"]
    assert list(STAGES) == ["encode", "unet", "decode"]


def test_stage_times_sum_to_the_step(tiny):
    pipe = StreamPipeline(tiny, _config(latent_feedback=False), bends=BENDS)
    pipe.prepare()
    for _ in range(3):
        marks = []
        start = time.perf_counter()
        pipe.step(timer=lambda stage: marks.append((stage, time.perf_counter())))
        whole = time.perf_counter() - start
        times, last = {}, start
        for stage, t in marks:
            times[stage], last = t - last, t
        assert list(times) == list(STAGES) and all(s > 0 for s in times.values()), times
        # after "decode" the step only stores the frame: the stages hold all but microseconds of it
        assert sum(times.values()) <= whole
        assert sum(times.values()) >= 0.9 * whole - 0.002, (times, whole)


@pytest.mark.parametrize("latent_feedback", [False, True])
def test_a_timed_frame_is_bit_identical_to_an_untimed_one(tiny, latent_feedback):
    pipe = StreamPipeline(tiny, _config(latent_feedback), bends=BENDS)
    pipe.prepare()
    untimed = [pipe.step() for _ in range(3)]
    pipe.prepare()  # the same first frame, noise and frame index again
    heard = []
    timed = [pipe.step(timer=heard.append) for _ in range(3)]
    assert heard == list(STAGES) * 3
    for a, b in zip(untimed, timed):
        assert torch.equal(a, b)

