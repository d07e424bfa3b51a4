"""The U-Net in segments: equals the plain U-Net, equals the Bender hooks with bends,
compiled equals eager, and changing block-level bends compiles nothing new."""
import logging

import pytest
import torch

from engine.bending import Bender, forward_hooks
from engine.bends import Bend
from engine.pipeline_base import PIPELINE_BACKENDS
from engine.segments import (BACKENDS, RUNNER_BACKENDS, SegmentedOutput, SegmentedUNet, check_supported,
                             segment_kind, segment_names, segmented_unet)

BLOCK_BENDS = [
    Bend("invert", layer="conv_in", param=1.0, target="channels 0 2"),
    Bend("add", layer="down.1", param=0.5),
    Bend("multiply", layer="mid", param=1.5),
    Bend("rotate", layer="up.2", param=0.3),
    Bend("add", layer="conv_out", param=0.2),
]


def unet_inputs(model, batch=1, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.latent_channels, size, size, generator=g)  # (B, C, H, W)
    emb = model.encode_prompt(["a test"] * batch)  # (B, L, D)
    return x, torch.tensor(500), emb


def plain(model, inputs, bends=()):
    """The U-Net as diffusers runs it, bent through Bender hooks when bends are given."""
    bender = Bender(model.unet, bends) if bends else None
    try:
        with torch.no_grad():
            return model.unet(inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample
    finally:
        if bender is not None:
            bender.remove()


def segmented(seg, inputs):
    with torch.no_grad():
        return seg(inputs[0], inputs[1], encoder_hidden_states=inputs[2]).sample


def differs(a, b):
    """Changed by more than float noise (the tiny U-Net damps some bends to ~1e-3)."""
    return (a - b).abs().max().item() > 1e-4


def hook_count(module):
    return sum(forward_hooks(module).values())


@pytest.mark.parametrize("size,batch,timestep", [(8, 1, None), (8, 2, 250), (12, 1, 999.0), (10, 1, None)])
def test_eager_equals_plain_unet(tiny, size, batch, timestep):
    inputs = unet_inputs(tiny, batch, size)
    if timestep is not None:
        inputs = (inputs[0], timestep, inputs[2])
    seg = segmented_unet(tiny)
    out = seg(*inputs[:2], encoder_hidden_states=inputs[2])
    assert isinstance(out, SegmentedOutput)
    assert torch.equal(out.sample.detach(), plain(tiny, inputs))


def test_eager_with_block_bends_equals_bender(tiny):
    inputs = unet_inputs(tiny, batch=2)
    seg = segmented_unet(tiny)
    seg.set_bends(BLOCK_BENDS)
    assert set(seg.bends_by_point) == {"conv_in", "down.1", "mid", "up.2", "conv_out"}
    bent = plain(tiny, inputs, BLOCK_BENDS)
    assert torch.allclose(segmented(seg, inputs), bent, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(bent, plain(tiny, inputs), atol=1e-3)  # the bends really act
    # an integer layer means the same point as for Bender; a step the bends skip is no bend
    seg.set_bends([Bend("add", layer=seg.names.index("mid"), param=0.5)])
    assert seg.bends_by_point["mid"][0].layer == "mid"
    seg.set_bends([Bend("add", layer="mid", param=0.5, step=3)])
    seg.step = 0
    assert torch.equal(segmented(seg, inputs), plain(tiny, inputs))
    seg.step = 3
    assert torch.allclose(segmented(seg, inputs), plain(tiny, inputs, [Bend("add", layer="mid", param=0.5)]), atol=1e-6)


def test_finer_points_use_hooks_and_log_once(tiny, caplog):
    inputs = unet_inputs(tiny)
    bends = [Bend("add", layer="down.1.attentions.0", param=0.5), Bend("multiply", layer="mid", param=1.2)]
    seg = segmented_unet(tiny)
    seg.set_bends(bends)
    with caplog.at_level(logging.INFO, logger="netbend.segments"):
        first = segmented(seg, inputs)
        segmented(seg, inputs)
    notes = [r for r in caplog.records if "not segment boundaries" in r.getMessage()]
    assert len(notes) == 1 and "down.1.attentions.0" in notes[0].getMessage()
    assert torch.allclose(first, plain(tiny, inputs, bends), atol=1e-6, rtol=1e-5)
    seg.set_bends([])
    assert torch.equal(segmented(seg, inputs), plain(tiny, inputs))
    assert hook_count(tiny.unet) == 0  # the hooks come off when no finer bend is left
    seg.remove()


def test_unsupported_configs_and_arguments(tiny):
    from diffusers import UNet2DConditionModel

    config = {k: v for k, v in tiny.unet.config.items() if not k.startswith("_")}
    with pytest.raises(ValueError, match=r"supports SD 1.x/2.x U-Nets .* class embeddings"):
        check_supported(UNet2DConditionModel(**{**config, "class_embed_type": "timestep"}))
    with pytest.raises(ValueError, match=r"addition embeddings \(addition_embed_type='text'"):
        check_supported(UNet2DConditionModel(**{**config, "addition_embed_type": "text"}))
    with pytest.raises(ValueError, match="needs a diffusers UNet2DConditionModel"):
        SegmentedUNet(torch.nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match="unknown segment backend 'trt'; allowed: eager, compile, trace, onnx, tensorrt"):
        segmented_unet(tiny, backend="trt")
    with pytest.raises(ValueError, match="the tensorrt back-end needs a runner for every segment; missing: time, "):
        SegmentedUNet(tiny.unet, backend="tensorrt", runners={})
    seg = segmented_unet(tiny)
    with pytest.raises(ValueError, match="unknown layer 'middle'; valid layers"):
        seg.set_bends([Bend("add", layer="middle")])
    x, t, emb = unet_inputs(tiny)
    with pytest.raises(ValueError, match=r"sample, timestep and encoder_hidden_states only; got \['added_cond_kwargs'\]"):
        seg(x, t, encoder_hidden_states=emb, added_cond_kwargs={"a": x})


@pytest.fixture(scope="module")
def compiled(tiny):
    """One compiled wrapper for the module: aot_eager compiles the tiny U-Net in ~10 s on
    two cores, inductor's C++ kernels take ~100 s."""
    torch._dynamo.reset()
    seg = segmented_unet(tiny, backend="compile", compile_options={"backend": "aot_eager"})
    yield seg
    seg.remove()
    torch._dynamo.reset()


def compile_counts():
    from torch._dynamo.utils import counters

    return (counters["stats"]["unique_graphs"], counters["frames"]["total"], counters["frames"]["ok"])


def test_compiled_equals_eager(tiny, compiled):
    inputs = unet_inputs(tiny)
    compiled.set_bends([])
    assert torch.allclose(segmented(compiled, inputs), plain(tiny, inputs), atol=1e-5, rtol=1e-4)
    compiled.set_bends(BLOCK_BENDS)
    assert torch.allclose(segmented(compiled, inputs), plain(tiny, inputs, BLOCK_BENDS), atol=1e-5, rtol=1e-4)


def test_changing_block_bends_compiles_nothing(tiny, compiled):
    inputs = unet_inputs(tiny)
    compiled.set_bends([Bend("add", layer="mid", param=0.1)])
    segmented(compiled, inputs)  # warm-up (the fixture may be fresh)
    before = compile_counts()
    assert before[0] > 0  # the segments really were compiled
    variants = [
        [Bend("add", layer="mid", param=0.7)],  # param
        [Bend("multiply", layer="mid", param=1.7)],  # operator
        [Bend("multiply", layer="mid", param=1.7, target="random_channels 0.5")],  # target
        [Bend("multiply", layer="up.1", param=1.7, target="rows 0.0:0.5")],  # layer
        [Bend("add", layer="down.2", param=0.5)],
        [Bend("invert", layer="conv_in", param=1.0), Bend("add", layer="down.0", param=0.3)],
        [Bend("add", layer="conv_out", param=-0.5)],
        [Bend("threshold", layer="up.3", param=0.2), Bend("add", layer="mid", param=0.2, step=0)],
        [Bend("add", layer="down.3", param=0.5, step=5)],  # not active at step 0: no bend
        [],
    ]
    outputs = []
    for bends in variants:
        compiled.set_bends(bends)
        outputs.append(segmented(compiled, inputs))
    assert compile_counts() == before, "a block-level bend change recompiled a segment"
    unbent = plain(tiny, inputs)
    for bends, out in zip(variants[:8], outputs[:8]):
        assert differs(out, unbent), f"{bends} did not change the output"
    assert torch.allclose(outputs[8], unbent, atol=1e-5) and torch.allclose(outputs[9], unbent, atol=1e-5)
    assert all(differs(a, b) for a, b in zip(outputs[:8], outputs[1:9]))
    assert torch.allclose(outputs[3], plain(tiny, inputs, variants[3]), atol=1e-5, rtol=1e-4)


# --- the pipelines' compile back-end: SegmentedUNet behind StreamPipeline ------------------

@pytest.fixture(scope="module")
def compiled_pipes(tiny):
    """A stream pipeline on the compile back-end (aot_eager: traced graphs, no C++ build) and
    an eager twin with the same config, both prepared."""
    from engine.pipeline_base import shared_segments
    from engine.stream import StreamConfig, StreamPipeline

    torch._dynamo.reset()
    tiny.unet.__dict__.pop("_netbend_segments", None)
    shared_segments(tiny, "compile", compile_options={"backend": "aot_eager"})
    config = dict(prompt="a test", steps=2, strength=0.6, seed=3)
    fast = StreamPipeline(tiny, StreamConfig(**config), backend="compile")
    slow = StreamPipeline(tiny, StreamConfig(**config))
    fast.prepare()
    slow.prepare()
    yield fast, slow
    fast.bender.remove()
    slow.bender.remove()
    tiny.unet.__dict__.pop("_netbend_segments", None)
    torch._dynamo.reset()


def test_compile_backend_pipeline_equals_eager_and_never_recompiles(tiny, compiled_pipes):
    fast, slow = compiled_pipes
    assert isinstance(fast.unet, SegmentedUNet) and fast.unet.backend == "compile"
    assert torch.allclose(fast.image, slow.image, atol=1e-4)  # the prepared frames agree
    for pipe in compiled_pipes:  # warm-up: every segment traced once; both loops advance alike
        pipe.bends = [Bend("add", layer="mid", param=0.1)]
        pipe.step()
    before = compile_counts()
    assert before[0] > 0
    frames = []
    for i, bends in enumerate([
        [Bend("rotate", layer="mid", param=0.4, opts={"plane": "R1"})],
        [Bend("rotate", layer="mid", param=1.9, opts={"plane": "R1"})],  # param
        [Bend("erode", layer="mid", param=2.0)],  # operator
        [Bend("erode", layer="up.1", param=2.0)],  # layer
        [Bend("erode", layer="up.1", param=2.0, target="random_channels 0.3")],  # target
        [Bend("multiply", layer=fast.bender.names.index("down.2"), param=1.4), Bend("add", layer="latent", param=0.2)],
        [Bend("add", layer="conv_out", param=0.3, step=1)],  # the second of two steps only
    ]):
        fast.bends = bends
        slow.bends = bends
        a, b = fast.step(), slow.step()
        assert torch.allclose(a, b, atol=2e-3), f"frame {i} with {bends}: compile differs from eager"
        frames.append(a)
    assert compile_counts() == before, "a bend change through pipe.bends recompiled a segment"
    assert all(differs(x, y) for x, y in zip(frames, frames[1:]))


def test_compile_backend_inner_bends_fall_back_to_hooks(tiny, compiled_pipes, caplog):
    fast, slow = compiled_pipes
    inner = [Bend("add", layer="up.1.attentions.0", param=0.8), Bend("multiply", layer="mid", param=1.3)]
    fast.bends = inner
    slow.bends = inner
    with caplog.at_level(logging.INFO, logger="netbend.segments"):
        a, b = fast.step(), slow.step()
    assert torch.allclose(a, b, atol=2e-3)
    assert any("up.1.attentions.0" in r.getMessage() and "not segment boundaries" in r.getMessage()
               for r in caplog.records)
    assert slow.bender.hooked and not fast.bender.hooked  # slow ran last: its hooks on every point
    fast.step()
    assert fast.bender.hooked and not slow.bender.hooked
    assert hook_count(tiny.unet) == len(fast.bender.names) - len(fast.bender.block_names)  # inner points only
    fast.bends = [Bend("multiply", layer="mid", param=1.3)]
    fast.step()
    assert not fast.bender.hooked and hook_count(tiny.unet) == 0  # no inner bend left: compiled segments again


def test_unknown_pipeline_backend_lists_allowed(tiny):
    from engine.stream import StreamPipeline

    with pytest.raises(ValueError, match="unknown backend 'fast'; allowed: auto, eager, compile, trace, tensorrt"):
        StreamPipeline(tiny, backend="fast")


def test_bends_keep_the_channels_last_layout_the_next_segment_was_compiled_for(tiny):
    """rotate_spatial (kornia's warp) returns a contiguous tensor for a channels-last input;
    the segment boundary restores the layout, or a compiled next segment would retrace."""
    seg = segmented_unet(tiny)
    seg.set_bends([Bend("rotate_spatial", layer="mid", param=0.5)])
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)  # (B, C, H, W)
    y = seg._bend(x, "mid")
    assert y.stride() == x.stride() and y.is_contiguous(memory_format=torch.channels_last)
    from engine.bends import apply_bends

    assert torch.equal(y, apply_bends(x, seg.bends_by_point["mid"], "mid", 0))
    seg.remove()


def test_a_bad_compile_backend_from_the_environment_is_named(monkeypatch):
    from engine.segments import default_compile_options

    monkeypatch.setenv("NETBEND_COMPILE_BACKEND", "turbo")
    with pytest.raises(ValueError, match=r"NETBEND_COMPILE_BACKEND='turbo' is not a torch.compile backend; "
                                         r"allowed: .*aot_eager.*inductor"):
        default_compile_options(torch.device("cpu"))
    monkeypatch.setenv("NETBEND_COMPILE_BACKEND", "aot_eager")
    assert default_compile_options(torch.device("cuda")) == {"backend": "aot_eager"}


# --- the trace back-end: TorchScript graphs of the segments --------------------------------

def trace_counts(seg):
    return {name: run.traces for name, run in seg._run.items()}


def test_traced_equals_eager_and_block_bend_changes_trace_nothing(tiny):
    seg = segmented_unet(tiny, backend="trace")
    inputs = unet_inputs(tiny)
    assert torch.equal(segmented(seg, inputs), plain(tiny, inputs))  # the same kernels, run from a graph
    assert set(trace_counts(seg).values()) == {1}  # every segment traced, once
    outputs = []
    for bends in ([Bend("add", layer="mid", param=0.7)], [Bend("multiply", layer="up.1", param=1.7)],
                  BLOCK_BENDS, [Bend("add", layer="down.2", param=0.5)], []):
        seg.set_bends(bends)
        out = segmented(seg, inputs)
        assert torch.allclose(out, plain(tiny, inputs, bends), atol=1e-6, rtol=1e-5), bends
        outputs.append(out)
    assert set(trace_counts(seg).values()) == {1}, "a bend change traced a segment again"
    assert all(differs(a, b) for a, b in zip(outputs, outputs[1:]))
    seg.remove()


def test_traced_segments_trace_again_for_a_new_shape_and_use_hooks_for_inner_bends(tiny, caplog):
    seg = segmented_unet(tiny, backend="trace")
    for size in (8, 12):  # 12: odd for the upsamplers, so the up blocks get an explicit size
        inputs = unet_inputs(tiny, size=size)
        assert torch.equal(segmented(seg, inputs), plain(tiny, inputs))
    assert set(trace_counts(seg).values()) == {2}
    inner = [Bend("add", layer="down.1.attentions.0", param=0.5), Bend("multiply", layer="mid", param=1.2)]
    seg.set_bends(inner)
    inputs = unet_inputs(tiny)
    with caplog.at_level(logging.INFO, logger="netbend.segments"):
        out = segmented(seg, inputs)
    assert torch.allclose(out, plain(tiny, inputs, inner), atol=1e-6, rtol=1e-5)  # the hook's bend is in
    assert any("not segment boundaries" in r.getMessage() for r in caplog.records)
    seg.set_bends([])
    assert torch.equal(segmented(seg, inputs), plain(tiny, inputs)) and hook_count(tiny.unet) == 0
    seg.remove()


def test_trace_backend_pipeline_equals_eager(tiny):
    """The stream pipeline on the trace back-end (U-Net segments and both VAE passes traced)
    makes the eager pipeline's frames, bends and bend changes included."""
    from engine.stream import StreamConfig, StreamPipeline

    tiny.unet.__dict__.pop("_netbend_segments", None)
    config = dict(prompt="a test", steps=2, strength=0.6, seed=3)
    fast = StreamPipeline(tiny, StreamConfig(**config), backend="trace")
    slow = StreamPipeline(tiny, StreamConfig(**config))
    try:
        fast.prepare()
        slow.prepare()
        assert torch.allclose(fast.image, slow.image, atol=1e-5)
        for bends in ([Bend("rotate", layer="mid", param=0.4, opts={"plane": "R1"}), Bend("erode", "up.1", 2.0)],
                      [Bend("add", layer="latent", param=0.2), Bend("multiply", layer="down.2", param=1.4)], []):
            fast.bends = bends
            slow.bends = bends
            assert torch.allclose(fast.step(), slow.step(), atol=1e-4), bends
        encode, decode = fast.encode_image, fast.decode_latent
        assert encode.traces == 1 and decode.traces == 1
        assert set(trace_counts(fast.unet).values()) == {1}
    finally:
        fast.bender.remove()
        slow.bender.remove()
        tiny.unet.__dict__.pop("_netbend_segments", None)


def test_segments_end_at_the_block_level_points_in_chain_order(tiny):
    seg = SegmentedUNet(tiny.unet)
    try:
        names = segment_names(tiny.unet)
        assert names[0] == "time" and list(seg.segments) == names
        ends = ["conv_out" if n == "out" else n for n in names[1:]]
        assert ends == [n for n in seg.bender.names if n in seg.block_names]  # the Bender's point names
        assert seg.names == seg.bender.names
        assert [segment_kind(n) for n in names] == ["time", "conv_in", *["down"] * 4, "mid", *["up"] * 4, "out"]
    finally:
        seg.remove()
    with pytest.raises(ValueError, match="unknown segment 'down'"):
        segment_kind("down")


def test_pipeline_back_ends_are_the_segment_back_ends_but_onnx_and_auto_resolves(tiny):
    from engine.pipeline_base import resolve_backend
    from engine.walk import WalkConfig, WalkPipeline

    assert set(PIPELINE_BACKENDS) == {"auto"} | set(BACKENDS) - {"onnx"} and set(RUNNER_BACKENDS) <= set(BACKENDS)
    assert resolve_backend("auto", "cpu") == "trace" and resolve_backend("auto", "cuda:0") == "eager"
    assert resolve_backend("compile", "cpu") == "compile"
    auto = WalkPipeline(tiny, backend="auto")
    auto.bender.remove()
    tiny.unet.__dict__.pop("_netbend_segments", None)
    assert auto.backend == "trace"  # the model is on the CPU here
    with pytest.raises(ValueError, match="unknown backend 'onnx'; allowed: auto, eager, compile, trace, tensorrt$"):
        WalkPipeline(tiny, backend="onnx")
    pipe = WalkPipeline(tiny)
    try:
        assert pipe.config == WalkConfig()  # no config given: the pipeline's defaults
    finally:
        pipe.bender.remove()


def test_a_trace_stream_traces_everything_in_prepare_not_in_its_first_frame(tiny):
    """The show's first frame must not pay for tracing (it made a 4 s recording 0.3 s short)."""
    from engine.stream import StreamConfig, StreamPipeline

    tiny.unet.__dict__.pop("_netbend_segments", None)
    tiny.vae.__dict__.pop("_netbend_traced", None)
    pipe = StreamPipeline(tiny, StreamConfig(prompt="a test", seed=3), backend="trace")
    try:
        pipe.prepare()
        assert pipe.encode_image.traces == 1 and pipe.decode_latent.traces == 1
        before = pipe.traces
        pipe.step()
        assert pipe.traces == before
    finally:
        pipe.bender.remove()
        tiny.unet.__dict__.pop("_netbend_segments", None)
        tiny.vae.__dict__.pop("_netbend_traced", None)
