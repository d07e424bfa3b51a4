"""ONNX export of the U-Net's segments: every segment runs under onnxruntime and equals
its eager twin, the U-Net chained through them equals the plain U-Net, files are written
atomically, and shapes that cannot be exported are refused with a clear message."""
import sys

import onnx
import onnxruntime  # noqa: F401 - the test extra installs it; fail loudly, not skip, when it is missing
import pytest
import torch

from engine.export import MissingDependencyError, OnnxSegment, export_segments, load_onnx_segments, require_onnx
from engine.segment_io import SegmentShapes, chain_calls
from engine.segments import SegmentedUNet, segment_names

SIZE = (64, 64)  # pixels: latent 8x8, the smallest the U-Net's three upsamplers take
ATOL = 1e-4  # fp32 onnxruntime against fp32 eager: only summation order differs


def unet_inputs(model, batch=1, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.latent_channels, size, size, generator=g)  # (B, C, H, W)
    emb = model.encode_prompt(["a test"] * batch)  # (B, L, D)
    return x, torch.tensor(500), emb


def flat(result):
    """A segment's result as a flat tuple of tensors (down blocks return (h, res))."""
    return (result[0], *result[1]) if isinstance(result, tuple) else (result,)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """Every segment of tiny's U-Net, exported once for the module."""
    folder = tmp_path_factory.mktemp("onnx")
    shapes = SegmentShapes.for_model(tiny, SIZE, dtype="fp32")
    seen = []
    paths = export_segments(tiny.unet, shapes, folder, progress=seen.append)
    return shapes, paths, seen, folder


@pytest.fixture
def seg(tiny):
    """An eager SegmentedUNet on tiny, taken off again after the test (it holds a Bender)."""
    seg = SegmentedUNet(tiny.unet)
    yield seg
    seg.remove()


@pytest.fixture(scope="module")
def onnx_segments(exported):
    return load_onnx_segments(exported[1])


def test_shapes_from_model(tiny):
    shapes = SegmentShapes.for_model(tiny, (128, 64), dtype="fp32")
    assert (shapes.latent_width, shapes.latent_height) == (16, 8)
    assert (shapes.latent_channels, shapes.context_length, shapes.context_dim) == (4, 77, 32)
    assert shapes.torch_dtype == torch.float32 and shapes.tag == "b1-8x16-fp32"
    assert SegmentShapes.from_dict(shapes.to_dict()) == shapes


@pytest.mark.parametrize("kwargs,message", [
    (dict(latent_height=0, latent_width=8), "latent_height must be a positive integer"),
    (dict(latent_height=8, latent_width=8.0), "latent_width must be a positive integer"),
    (dict(latent_height=8, latent_width=8, batch=True), "batch must be a positive integer"),
    (dict(latent_height=8, latent_width=8, dtype="bf16"), "dtype 'bf16' is not one of: fp16, fp32"),
])
def test_shapes_validate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegmentShapes(**kwargs)


@pytest.mark.parametrize("size", [(80, 64), (64, 96), (64, 68)])
def test_size_the_upsamplers_cannot_take_is_refused(tiny, size):
    with pytest.raises(ValueError, match=r"multiple of (8|the VAE)"):
        SegmentShapes.for_model(tiny, size, dtype="fp32")


def test_bad_shapes_are_refused_before_anything_is_written(tiny, tmp_path):
    odd = SegmentShapes(latent_height=10, latent_width=8, context_dim=32, dtype="fp32")
    with pytest.raises(ValueError, match="latent 8x10 is not a multiple of 8 .* multiples of 64 pixels"):
        export_segments(tiny.unet, odd, tmp_path / "out")
    wrong_width = SegmentShapes(latent_height=8, latent_width=8, context_dim=768, dtype="fp32")
    with pytest.raises(ValueError, match="context_dim 768 != the U-Net's cross_attention_dim 32"):
        export_segments(tiny.unet, wrong_width, tmp_path / "out")
    half = SegmentShapes(latent_height=8, latent_width=8, context_dim=32, dtype="fp16")
    with pytest.raises(ValueError, match="the U-Net is torch.float32 but the shapes ask for fp16"):
        export_segments(tiny.unet, half, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown segments \\['down.9'\\]"):
        export_segments(tiny.unet, SegmentShapes(8, 8, context_dim=32, dtype="fp32"), tmp_path / "out",
                        names=["down.9"])
    from engine.bending import Bender
    from engine.bends import Bend

    bender = Bender(tiny.unet, [Bend("add", layer="mid", param=0.5)])
    try:
        with pytest.raises(ValueError, match=r"forward hooks on conv_in, .* \(bends\?\).*traced into the graphs"):
            export_segments(tiny.unet, SegmentShapes(8, 8, context_dim=32, dtype="fp32"), tmp_path / "out")
    finally:
        bender.remove()
    assert not (tmp_path / "out").exists() or listing(tmp_path / "out") == []


def test_every_segment_is_written_in_chain_order(tiny, exported):
    _, paths, seen, folder = exported
    names = ["time", "conv_in", "down.0", "down.1", "down.2", "down.3", "mid", "up.0", "up.1", "up.2", "up.3", "out"]
    assert segment_names(tiny.unet) == names == list(paths) == seen
    assert listing(folder) == sorted(f"{n}.onnx" for n in names)  # no temp files or folders left
    for name, path in paths.items():
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        for value in (*model.graph.input, *model.graph.output):  # fixed shapes: no symbolic dims
            assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim), (name, value.name)


def test_stable_io_names(exported):
    paths = exported[1]

    def io(name):
        model = onnx.load(str(paths[name]))
        return [i.name for i in model.graph.input], [o.name for o in model.graph.output]

    assert io("time") == (["t"], ["emb"])
    assert io("conv_in") == (["sample"], ["h_out"])
    assert io("down.0") == (["h", "emb", "context"], ["h_out", "res0", "res1", "res2"])
    assert io("down.3")[1] == ["h_out", "res0", "res1"]  # no downsampler in the last block
    assert io("mid") == (["h", "emb", "context"], ["h_out"])
    assert io("up.1") == (["h", "emb", "context", "res0", "res1", "res2"], ["h_out"])
    assert io("out") == (["h"], ["sample_out"])
    # UpBlock2D has no cross-attention: the TorchScript exporter drops the unused input, torch.export keeps it
    assert io("up.0")[0] in (["h", "emb", "res0", "res1", "res2"], ["h", "emb", "context", "res0", "res1", "res2"])


def test_each_segment_matches_eager(tiny, seg, onnx_segments):
    x, _, context = unet_inputs(tiny, seed=3)
    calls = chain_calls(seg, x, torch.tensor([250]), context)  # an int64 timestep: the graph takes float32
    assert list(calls) == list(onnx_segments)
    for name, (args, eager) in calls.items():
        got = onnx_segments[name](*args)
        assert type(got) is type(eager), name
        for a, b in zip(flat(got), flat(eager), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype, name
            torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4, msg=name)


@pytest.mark.parametrize("timestep", [torch.tensor(500), 999.0, 1])
def test_unet_through_onnx_segments_equals_unet(tiny, seg, onnx_segments, timestep):
    x, _, context = unet_inputs(tiny)
    with torch.no_grad():
        expected = tiny.unet(x, timestep, encoder_hidden_states=context).sample
    calls = []

    def counted(name, fn):
        def run(*args):
            calls.append(name)
            return fn(*args)

        return run

    onnx = SegmentedUNet(tiny.unet, backend="onnx", bender=seg.bender,
                         runners={name: counted(name, fn) for name, fn in onnx_segments.items()})
    got = onnx(x, timestep, encoder_hidden_states=context).sample
    assert calls == list(onnx_segments)  # every segment ran from ONNX, none eagerly
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-4)


def test_bends_between_onnx_segments_need_no_new_export(tiny, seg, onnx_segments, monkeypatch):
    """The exported graphs hold no bends: changing operator, param, target or block-level
    layer acts between the runners and exports nothing new."""
    from engine import export
    from engine.bending import Bender
    from engine.bends import Bend

    exports = []
    monkeypatch.setattr(export, "export_segments", lambda *a, **k: exports.append(a))
    x, t, context = unet_inputs(tiny)
    onnx = SegmentedUNet(tiny.unet, backend="onnx", bender=seg.bender, runners=onnx_segments)
    for bends in ([Bend("add", layer="mid", param=0.5)], [Bend("multiply", layer="mid", param=1.5)],
                  [Bend("rotate", layer="up.2", param=0.3, target="channels 0 2")],
                  [Bend("invert", layer="conv_in", param=1.0), Bend("add", layer="down.1", param=0.5)]):
        onnx.set_bends(bends)
        with torch.no_grad():
            got = onnx(x, t, encoder_hidden_states=context).sample
        reference = Bender(tiny.unet, bends)  # the eager hooks, for comparison
        try:
            with torch.no_grad():
                expected = tiny.unet(x, t, encoder_hidden_states=context).sample
        finally:
            reference.remove()
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-4, msg=str(bends))
    assert exports == []


def test_runner_refuses_another_shape(tiny, onnx_segments):
    with pytest.raises(ValueError, match="exported for sample of shape \\(1, 4, 8, 8\\), got \\(1, 4, 16, 16\\)"):
        onnx_segments["conv_in"](torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="upsample_size"):
        h = torch.zeros(1, 64, 1, 1)
        onnx_segments["up.0"](h, torch.zeros(1, 64), torch.zeros(1, 77, 32), (h, h, h), (2, 2))


def test_failed_export_leaves_the_old_file_and_no_temp_files(tiny, tmp_path, monkeypatch):
    shapes = SegmentShapes.for_model(tiny, SIZE, dtype="fp32")
    (tmp_path / "conv_in.onnx").write_bytes(b"the previous export")

    def half_written(module, args, f, **kwargs):
        with open(f, "wb") as out:
            out.write(b"\x08\x09half a protobuf")
        raise RuntimeError("the exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="could not export segment conv_in to ONNX: TorchScript .* crashed"):
        export_segments(tiny.unet, shapes, tmp_path, names=["conv_in"])
    assert listing(tmp_path) == ["conv_in.onnx"]
    assert (tmp_path / "conv_in.onnx").read_bytes() == b"the previous export"


def test_failed_check_leaves_no_onnx_behind(tiny, tmp_path, monkeypatch):
    shapes = SegmentShapes.for_model(tiny, SIZE, dtype="fp32")

    def refuse(path, *args, **kwargs):
        raise onnx.checker.ValidationError("bad graph")

    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    for external in (False, True):
        with pytest.raises(onnx.checker.ValidationError):
            export_segments(tiny.unet, shapes, tmp_path, names=["mid"], external_data=external)
        assert listing(tmp_path) == []


def test_external_data_stays_beside_its_graph(tiny, seg, tmp_path):
    shapes = SegmentShapes.for_model(tiny, SIZE, dtype="fp32")
    x, t, context = unet_inputs(tiny)
    args, eager = chain_calls(seg, x, t.reshape(1), context)["up.1"]
    for _ in range(2):  # a second export replaces the data file instead of appending to it
        path = export_segments(tiny.unet, shapes, tmp_path, names=["up.1"], external_data=True)["up.1"]
        data = [n for n in listing(tmp_path) if n.endswith(".data")]
        assert len(data) == 1 and data[0].startswith("up.1.onnx.")
        torch.testing.assert_close(OnnxSegment("up.1", path)(*args), eager, atol=ATOL, rtol=1e-4)
    export_segments(tiny.unet, shapes, tmp_path, names=["up.1"], external_data=False)
    assert listing(tmp_path) == ["up.1.onnx"]  # the old data file went with the graph that named it


def test_torch_export_is_the_fallback(tiny, tmp_path, monkeypatch):
    real = torch.onnx.export

    def no_torchscript(*args, dynamo=True, **kwargs):
        if not dynamo:
            raise RuntimeError("this torch has no TorchScript exporter")
        return real(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_torchscript)
    shapes = SegmentShapes.for_model(tiny, SIZE, dtype="fp32")
    path = export_segments(tiny.unet, shapes, tmp_path, names=["conv_in"])["conv_in"]
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        expected = tiny.unet.conv_in(x)
    torch.testing.assert_close(OnnxSegment("conv_in", path)(x), expected, atol=ATOL, rtol=1e-4)
    assert listing(tmp_path) == ["conv_in.onnx"]


def test_missing_onnx_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install onnx onnxruntime"):
        require_onnx()
    assert issubclass(MissingDependencyError, ImportError)
