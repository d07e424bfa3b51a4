"""The paper as its authors' code ran it (issue 11): the two noise walks, the chain's
options, prompt schedules, on the tiny model."""
import math

import pytest
import torch

from engine.bends import Bend
from engine.chain import ChainConfig, ChainPipeline
from engine.prompts import PromptSchedule
from engine.walk import WalkConfig, WalkPipeline


def corr(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def walk(tiny, **kw):
    kw.setdefault("steps", 3)
    kw.setdefault("guidance", 1.0)
    pipe = WalkPipeline(tiny, WalkConfig(prompt="mesh", **kw))
    pipe.prepare()
    return pipe


# -- the walk --------------------------------------------------------------------------------

def test_the_published_code_walk_stays_near_one_image_and_returns_to_its_start(tiny):
    pipe = walk(tiny, walk="base_circle")
    total = 40
    noises = [pipe.noise(i, total) for i in range(total)]
    assert min(corr(a, b) for a, b in zip(noises, noises[1:])) >= 0.9
    assert min(corr(noises[0], n) for n in noises) > 0.8  # any two frames stay alike
    assert torch.equal(noises[0], noises[-1])  # one turn over the whole render
    assert not torch.equal(noises[0], noises[total // 2])
    # N + 0.3 (A cos + B sin): frame 0 is the base plus 0.3 A
    torch.testing.assert_close(noises[0], pipe._base + 0.3 * pipe._a)


def test_the_paper_text_walk_loses_resemblance_within_a_quarter_turn(tiny):
    pipe = walk(tiny)  # circle, 100 frames a turn
    assert pipe.period() == 100
    assert abs(corr(pipe.noise(0), pipe.noise(25))) < 0.3  # 1.25 s at 20 fps
    assert torch.equal(pipe.noise(0), pipe.noise(100))
    torch.testing.assert_close(pipe.noise(0), pipe._b)  # frame 0 is the seed's own noise


def test_walk_period_and_amplitude_options(tiny):
    pipe = walk(tiny, walk="base_circle", period=8, amplitude=0.5)
    assert torch.equal(pipe.noise(3), pipe.noise(11))
    torch.testing.assert_close(pipe.noise(0) - pipe._base, 0.5 * pipe._a)
    with pytest.raises(ValueError, match="pass total"):
        walk(tiny, walk="base_circle").noise(3)
    assert walk(tiny, walk="base_circle").period(1) == 1  # a one-frame render (a sweep cell)


@pytest.mark.parametrize("kw, message", [
    (dict(walk="spiral"), "unknown walk 'spiral'; allowed: circle"),
    (dict(period=0), "period must be >= 1"),
    (dict(amplitude=float("nan")), "amplitude must be a finite number"),
    (dict(prompt_to="b", prompts=[[0, "a"]]), "either prompt_to or a prompts schedule"),
    (dict(prompts=[[5, "a"], [1, "b"]]), "times must increase"),
])
def test_walk_config_says_what_is_wrong(kw, message):
    with pytest.raises(ValueError, match=message):
        WalkConfig(**kw)


def test_paper_seed_is_the_default():
    assert WalkConfig().seed == 46 and ChainConfig().seed == 46


# -- prompt schedules --------------------------------------------------------------------------

def test_a_schedule_of_three_prompts_interpolates_in_order():
    s = PromptSchedule.parse([[0, "starry night"], [10, "forest with river"], [30, "the sea"]])
    assert s.at(0) == ("starry night", "starry night", 0.0)
    assert s.at(5) == ("starry night", "forest with river", 0.5)
    assert s.at(20) == ("forest with river", "the sea", 0.5)
    assert s.at(99) == ("the sea", "the sea", 0.0)
    emb = {"starry night": torch.zeros(1, 2, 3), "forest with river": torch.ones(1, 2, 3),
           "the sea": torch.full((1, 2, 3), 3.0)}
    values = [float(s.embedding(t, emb).mean()) for t in range(0, 40, 2)]
    assert values == sorted(values)  # from the first prompt through the second to the third
    assert values[0] == 0.0 and values[5] == 1.0 and values[-1] == 3.0


def test_schedule_forms_and_errors():
    a = PromptSchedule.parse("0:starry night|12.5:forest with river")
    b = PromptSchedule.parse([{"time": 0, "prompt": "starry night"}, {"time": 12.5, "prompt": "forest with river"}])
    assert a == b and str(a) == "0:starry night|12.5:forest with river"
    assert PromptSchedule.parse(a.to_list()) == a
    assert PromptSchedule.over(["x", "y", "z"], 10.0).keys == ((0.0, "x"), (5.0, "y"), (10.0, "z"))
    assert PromptSchedule.parse("0:a|2:b", interpolation="step").at(1.9) == ("a", "a", 0.0)
    for bad, message in [("", "bad prompt schedule part"), ([], "at least one"), ([[-1, "a"]], ">= 0"),
                         ([[0, 5]], "not text"), ("0:a|0:b", "must increase"), (42, "bad prompt schedule")]:
        with pytest.raises(ValueError, match=message):
            PromptSchedule.parse(bad)


def test_walk_follows_a_prompt_schedule_at_its_fps(tiny):
    sched = [[0.0, "starry night"], [1.0, "forest with river"], [2.0, "the sea"]]
    pipe = walk(tiny, prompts=sched)
    pipe.fps = 10.0
    enc = {p: tiny.encode_prompt([p]) for p in ("starry night", "forest with river", "the sea")}
    torch.testing.assert_close(pipe.condition(0), enc["starry night"])
    torch.testing.assert_close(pipe.condition(5), torch.lerp(enc["starry night"], enc["forest with river"], 0.5))
    torch.testing.assert_close(pipe.condition(15), torch.lerp(enc["forest with river"], enc["the sea"], 0.5))
    torch.testing.assert_close(pipe.condition(25), enc["the sea"])
    other = WalkPipeline(tiny, WalkConfig(prompt="forest with river", steps=3, guidance=1.0))
    torch.testing.assert_close(pipe.frame(10), other.frame(10))  # at 1 s: exactly the second prompt


# -- the chain ---------------------------------------------------------------------------------

def chain(tiny, bends=(), **kw):
    kw.setdefault("steps", 10)
    kw.setdefault("guidance", 1.0)
    return ChainPipeline(tiny, ChainConfig(prompt="a floating orb", **kw), bends)


def test_chain_empty_prompt_after_frame_0_as_in_the_paper_text(tiny):
    pipe = chain(tiny, prompt_after_first="")
    pipe.prepare()
    torch.testing.assert_close(pipe.condition(0), tiny.encode_prompt(["a floating orb"]))
    torch.testing.assert_close(pipe.condition(1), tiny.encode_prompt([""]))
    torch.testing.assert_close(pipe.condition(7), tiny.encode_prompt([""]))
    assert torch.equal(pipe.frame(), chain(tiny).frame())  # frame 0 still from the prompt


def test_chain_frame_0_unbent_as_in_the_authors_code(tiny):
    bend = [Bend("add", "latent", 0.5, step=1)]
    unbent_first = chain(tiny, bend, bend_first=False)
    plain = chain(tiny)
    bent_all = chain(tiny, bend)
    f0 = unbent_first.frame()
    assert torch.equal(f0, plain.frame())
    assert not torch.allclose(f0, bent_all.frame())
    assert unbent_first.bends == tuple(bend)  # the bends are back for frame 1
    assert not torch.allclose(unbent_first.frame(), plain.frame())


def test_chain_follows_a_prompt_schedule(tiny):
    pipe = chain(tiny, prompts=[[0, "a floating orb"], [1, "a cube"]])
    pipe.fps = 4.0
    pipe.prepare()
    enc_a, enc_b = tiny.encode_prompt(["a floating orb"]), tiny.encode_prompt(["a cube"])
    torch.testing.assert_close(pipe.condition(2), torch.lerp(enc_a, enc_b, 0.5))
    torch.testing.assert_close(pipe.condition(4), enc_b)
    with pytest.raises(ValueError, match="either prompt_after_first or a prompts schedule"):
        ChainConfig(prompts=[[0, "a"]], prompt_after_first="")


def test_sd_1_4_alias_is_the_papers_checkpoint(tmp_path, monkeypatch):
    from engine.model_files import ModelNotFoundError
    from engine.models import MODEL_ALIASES, load_model

    assert MODEL_ALIASES["sd-1.4"] == "CompVis/stable-diffusion-v1-4"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFoundError, match="CompVis/stable-diffusion-v1-4"):
        load_model("sd-1.4", device="cpu")


def test_stream_follows_a_prompt_schedule_until_a_prompt_is_set(tiny):
    from engine.stream import StreamConfig, StreamPipeline

    pipe = StreamPipeline(tiny, StreamConfig(prompt="x", seed=3, prompts=[[0, "neon"], [1, "fog"], [2, "sea"]]))
    pipe.fps = 4.0
    pipe.prepare()
    enc = {p: tiny.encode_prompt([p]) for p in ("neon", "fog", "sea")}
    torch.testing.assert_close(pipe.prompt_embeds, enc["neon"])
    seen = []
    for _ in range(10):
        pipe.step()
        seen.append(pipe.prompt_embeds.clone())
    torch.testing.assert_close(seen[2], torch.lerp(enc["neon"], enc["fog"], 0.5))  # frame 2 at 0.5 s
    torch.testing.assert_close(seen[6], torch.lerp(enc["fog"], enc["sea"], 0.5))
    torch.testing.assert_close(seen[9], enc["sea"])
    pipe.set_prompt("neon")  # a performer's prompt wins over the schedule
    for _ in range(9):
        pipe.step()
    torch.testing.assert_close(pipe.prompt_embeds, enc["neon"])
    with pytest.raises(ValueError, match="times must increase"):
        StreamConfig(prompts=[[1, "a"], [1, "b"]])
