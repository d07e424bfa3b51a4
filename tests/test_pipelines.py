"""The three pipelines on the tiny model: determinism, the paper's latent layers, the walk
loop, the stream's prompt blend and feedback, and bends through each."""
import math

import pytest
import torch

import engine.bending as bending
from engine.bends import Bend
from engine.chain import ChainConfig, ChainPipeline
from engine.stream import StreamConfig, StreamPipeline, stream_timesteps
from engine.walk import WalkConfig, WalkPipeline


def stream(model, bends=(), **kw):
    pipe = StreamPipeline(model, StreamConfig(prompt="neon", seed=3, **kw), bends)
    pipe.prepare()
    return pipe


def frames_of(pipe, n):
    return [pipe.step() for _ in range(n)]


@pytest.fixture
def latent_calls(monkeypatch):
    """Every latent bend point a pipeline visits: (step, active bends, x before, x after)."""
    calls = []
    real = bending.apply_bends

    def spy(x, bends, layer, step):
        out = real(x, bends, layer, step)
        calls.append((step, [b for b in bends if b.layer == layer and b.active_at(step)], x.clone(), out.clone()))
        return out

    monkeypatch.setattr(bending, "apply_bends", spy)
    return calls


def test_stream_timesteps_match_sd_turbo_conventions():
    assert stream_timesteps(1, 1.0) == [999]
    assert stream_timesteps(1, 0.5) == [499]
    assert stream_timesteps(2, 0.5) == [499, 249]
    assert stream_timesteps(4, 1.0) == [999, 749, 499, 249]


def test_stream_frames_shape_range_and_determinism(tiny):
    a = frames_of(stream(tiny), 3)
    b = frames_of(stream(tiny), 3)
    assert a[0].shape == (1, 3, 64, 64)
    assert all(0.0 <= f.min() and f.max() <= 1.0 for f in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # it feeds back: frames evolve
    c = frames_of(stream(tiny), 1)  # a fresh pipeline with the same seed starts the same
    assert torch.equal(c[0], a[0])


def test_stream_seed_changes_frames(tiny):
    a = StreamPipeline(tiny, StreamConfig(prompt="neon", seed=1))
    b = StreamPipeline(tiny, StreamConfig(prompt="neon", seed=2))
    assert not torch.equal(a.prepare(), b.prepare())


def test_stream_bends_change_frames_and_removal_restores(tiny):
    plain = frames_of(stream(tiny), 2)
    pipe = stream(tiny, [Bend("rotate", "mid", 1.5), Bend("add", "latent", 0.5, step=1)])
    bent = [pipe.step()]
    pipe.bends = []
    pipe2 = stream(tiny)
    assert not torch.allclose(bent[0], plain[0])
    assert torch.equal(pipe2.step(), plain[0])


def test_stream_prompt_change_blends_by_slerp(tiny):
    pipe = stream(tiny, prompt_blend_frames=4)
    start = pipe._emb.clone()
    target = tiny.encode_prompt(["a different prompt"])
    pipe.set_prompt("a different prompt")
    distances = []
    for _ in range(4):
        pipe.step()
        distances.append((pipe._emb - target).norm().item())
    assert (pipe._emb - start).norm() > 0
    assert distances == sorted(distances, reverse=True) and distances[-1] == pytest.approx(0.0, abs=1e-5)
    assert distances[0] > 0.1  # not a cut


def test_stream_latent_feedback_and_guards_run(tiny):
    pipe = stream(tiny, latent_feedback=True, color_coherence=1.0, noise_floor=0.05, steps=2)
    frames = frames_of(pipe, 3)
    ref_mean = pipe._reference[0]
    assert torch.allclose(frames[-1].mean(dim=(-2, -1), keepdim=True), ref_mean, atol=0.05)


def test_stream_bend_at_latent_step_fires_once_at_that_step(tiny, latent_calls):
    pipe = stream(tiny, [Bend("add", "latent", 0.3, step=1)], steps=2)
    latent_calls.clear()
    pipe.step()
    fired = [c for c in latent_calls if c[1]]
    assert [c[0] for c in fired] == [1]


@pytest.mark.parametrize("layer", [0, 40, 50])
def test_walk_latent_layer_n_is_the_papers(tiny, latent_calls, layer, monkeypatch):
    """DDIM, 50 steps: layer 0 bends the initial noise, 40 bends x_t with 10 steps left,
    50 bends the final latent just before the VAE; each exactly once per image."""
    pipe = WalkPipeline(tiny, WalkConfig(prompt="orb", steps=50, guidance=1.0, period=8),
                        [Bend("add", "latent", 0.25, step=layer)])
    decoded = []
    real_decode = tiny.decode_latent
    monkeypatch.setattr(tiny, "decode_latent", lambda z: decoded.append(z.clone()) or real_decode(z))
    pipe.prepare()
    latent_calls.clear()
    pipe.frame(2)
    fired = [c for c in latent_calls if c[1]]
    assert len(latent_calls) == 51  # points 0..50
    assert [c[0] for c in fired] == [layer]
    step, _, before, after = fired[0]
    torch.testing.assert_close(after, before + 0.25)
    if layer == 0:
        torch.testing.assert_close(before, pipe.noise(2))
    if layer == 50:
        torch.testing.assert_close(decoded[0], after)
    remaining = len(pipe._scheduler.timesteps) - step
    assert remaining == 50 - layer


def test_walk_noise_returns_to_start_after_k_frames(tiny):
    pipe = WalkPipeline(tiny, WalkConfig(prompt="loop", steps=4, guidance=1.0, period=6))
    pipe.prepare()
    assert torch.equal(pipe.noise(0), pipe.noise(6))
    assert not torch.allclose(pipe.noise(0), pipe.noise(3))
    torch.testing.assert_close(pipe.noise(0).std(), torch.tensor(1.0), atol=0.2, rtol=0)
    torch.testing.assert_close(pipe.noise(1).std(), torch.tensor(1.0), atol=0.2, rtol=0)
    assert torch.equal(pipe.frame(0), pipe.frame(6))


def test_walk_interpolates_between_prompts(tiny):
    pipe = WalkPipeline(tiny, WalkConfig(prompt="starry night", prompt_to="forest with river", steps=3, guidance=1.0))
    plain = WalkPipeline(tiny, WalkConfig(prompt="starry night", steps=3, guidance=1.0))
    other = WalkPipeline(tiny, WalkConfig(prompt="forest with river", steps=3, guidance=1.0))
    assert torch.equal(pipe.frame(0, total=5), plain.frame(0))
    torch.testing.assert_close(pipe.frame(4, total=5), other.frame(4))


def test_walk_with_guidance_is_deterministic(tiny):
    a = WalkPipeline(tiny, WalkConfig(steps=3, guidance=7.5), [Bend("rotate", "latent", 1.0, step=1)]).frame(1)
    b = WalkPipeline(tiny, WalkConfig(steps=3, guidance=7.5), [Bend("rotate", "latent", 1.0, step=1)]).frame(1)
    c = WalkPipeline(tiny, WalkConfig(steps=3, guidance=7.5)).frame(1)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_chain_runs_strength_times_steps_and_is_deterministic(tiny, latent_calls):
    def run():
        pipe = ChainPipeline(tiny, ChainConfig(prompt="a floating orb", steps=50, strength=0.5, guidance=1.0),
                             [Bend("add", "latent", 0.1, step=1)])
        return pipe, [pipe.frame() for _ in range(3)]

    pipe, a = run()
    fired = [c for c in latent_calls if c[1]]
    # frame 0 from the prompt (50 steps, points 0..50), then 25 steps a frame (points 0..25)
    assert len(latent_calls) == 51 + 26 + 26
    assert [c[0] for c in fired] == [1, 1, 1]
    _, b = run()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], a[2])


def test_chain_from_an_init_image(tiny):
    init = torch.rand(1, 3, 32, 48)  # resized to the pipeline's size
    pipe = ChainPipeline(tiny, ChainConfig(steps=10, strength=0.3, guidance=1.0))
    pipe.prepare(init_image=init)
    assert pipe.frame().shape == (1, 3, 64, 64)


@pytest.mark.parametrize("factory, message", [
    (lambda: StreamConfig(steps=0), "steps must be 1..50"),
    (lambda: StreamConfig(strength=0), r"strength must be in \(0, 1\]"),
    (lambda: StreamConfig(width=100), "multiple of 8"),
    (lambda: WalkConfig(period=0), "period must be >= 1"),
    (lambda: ChainConfig(steps=1, strength=0.5), "needs >= 1"),
])
def test_configs_validate(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_stream_resume_draws_no_noise_and_keeps_the_noise_sequence(tiny, monkeypatch):
    # Recovery after a failed frame calls resume(last_good, frame_index) on the render
    # thread: it must not replay frame_index random draws (slower the longer a show has
    # run), and the frames after it must use the same fresh noise as an uninterrupted run.
    straight = stream(tiny, noise_floor=0.05)
    expected = frames_of(straight, 5)[-1]

    interrupted = stream(tiny, noise_floor=0.05)
    frames_of(interrupted, 3)
    draws = []
    real_randn = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *a, **k: draws.append(a) or real_randn(*a, **k))
    interrupted.resume(interrupted.image, 10_000)
    assert draws == []  # constant time, whatever the index
    monkeypatch.setattr(torch, "randn", real_randn)
    interrupted.resume(interrupted.image, 3)  # back where it was
    again = frames_of(interrupted, 2)[-1]
    assert interrupted.frame_index == 5
    assert torch.allclose(again, expected, atol=1e-5)
