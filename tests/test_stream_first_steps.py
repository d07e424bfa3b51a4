"""The stream's first frame can be drawn with more steps than the feedback frames: a model
that is not distilled for one step (mini) starts from a cleaner picture."""
import pytest

from engine.stream import StreamConfig, StreamPipeline


def _unet_calls(pipe, monkeypatch):
    calls = []
    forward = pipe.unet.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.unet, "forward", counted)
    return calls


@pytest.mark.parametrize("first_steps, expected", [(None, 2), (5, 5)])
def test_first_frame_runs_first_steps_then_feedback_runs_steps(tiny, monkeypatch, first_steps, expected):
    pipe = StreamPipeline(tiny, StreamConfig(steps=2, first_steps=first_steps))
    calls = _unet_calls(pipe, monkeypatch)
    pipe.prepare()
    assert len(calls) == expected
    pipe.step()
    assert len(calls) == expected + 2


def test_first_frame_steps_differ_but_repeat(tiny):
    a = StreamPipeline(tiny, StreamConfig(first_steps=6)).prepare()
    b = StreamPipeline(tiny, StreamConfig(first_steps=6)).prepare()
    c = StreamPipeline(tiny, StreamConfig(first_steps=1)).prepare()
    assert (a - b).abs().max() == 0 and (a - c).abs().max() > 0


@pytest.mark.parametrize("bad", [0, 51, -1])
def test_bad_first_steps_is_refused(bad):
    with pytest.raises(ValueError, match="first_steps must be 1..50"):
        StreamConfig(first_steps=bad)
