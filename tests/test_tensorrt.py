"""TensorRT engine cache: the key changes with everything an engine depends on, a stale
engine is never used, the cache folder follows the environment, and `build-engines`
refuses a machine without a GPU or TensorRT before loading anything. Building and
running engines is tested where tensorrt and a CUDA GPU exist (marker `gpu`)."""
import argparse
import copy
import json
import logging
import sys

import pytest
import torch

import live.cli.build_engines as build_engines
from engine.segment_io import SegmentShapes, chain_calls
from engine.segments import SegmentedUNet
from engine.tensorrt import (NO_GPU, TRT_INSTALL_HINT, TensorRTUnavailable, build_all, default_cache_dir,
                             require_tensorrt)
from engine.trt_cache import EngineKey, cache_status, find_engine, timing_cache_path, unet_fingerprint, write_engine

SHAPES = SegmentShapes(latent_height=8, latent_width=8, context_dim=32, dtype="fp16")


@pytest.fixture(scope="module")
def model_hash(tiny):
    return unet_fingerprint(tiny.unet)


@pytest.fixture
def key(model_hash):
    return EngineKey(model_hash=model_hash, segment="down.1", shapes=SHAPES, trt_version="10.7.0",
                     gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9")


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- fingerprint and key

def test_fingerprint_follows_the_weights(tiny, model_hash):
    from engine.tiny import tiny_components

    assert unet_fingerprint(tiny) == model_hash  # a Model or its U-Net
    assert unet_fingerprint(tiny_components(seed=0)[0]) == model_hash  # same weights, another object
    assert unet_fingerprint(tiny_components(seed=1)[0]) != model_hash  # other weights
    edited = copy.deepcopy(tiny.unet)
    with torch.no_grad():
        edited.conv_in.weight[0, 0, 0, 0] += 1e-3  # one element (a sampled one: the first)
    assert unet_fingerprint(edited) != model_hash
    assert unet_fingerprint(copy.deepcopy(tiny.unet).half()) != model_hash  # same numbers, another dtype


def test_key_paths_differ_for_everything_an_engine_depends_on(tmp_path, key, tiny):
    from dataclasses import replace

    from engine.tiny import tiny_components

    variants = {
        "weights": replace(key, model_hash=unet_fingerprint(tiny_components(seed=1)[0])),
        "segment": replace(key, segment="down.2"),
        "size": replace(key, shapes=replace(SHAPES, latent_width=16)),
        "batch": replace(key, shapes=replace(SHAPES, batch=2)),
        "dtype": replace(key, shapes=replace(SHAPES, dtype="fp32")),
        "fp16 flag": replace(key, fp16=False),
        "tensorrt": replace(key, trt_version="10.8.0"),
        "gpu": replace(key, gpu_name="NVIDIA H100 80GB HBM3"),
        "sm": replace(key, compute_capability="9.0"),
        "format": replace(key, format=key.format + 1),
    }
    paths = {what: k.path(tmp_path) for what, k in variants.items()}
    assert len(set(paths.values()) | {key.path(tmp_path)}) == len(variants) + 1, paths
    assert replace(key).path(tmp_path) == key.path(tmp_path)  # an equal key finds the same file
    assert key.path(tmp_path).name == f"down.1_b1-8x8-fp16_{key.digest}.engine"
    assert key.sidecar(tmp_path).name == f"down.1_b1-8x8-fp16_{key.digest}.json"
    assert len(key.digest) == 16
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key


@pytest.mark.parametrize("change,message", [
    (dict(segment="down"), "unknown segment 'down'"),
    (dict(model_hash="not-a-hash"), "model_hash must be a hex digest"),
    (dict(trt_version=""), "trt_version must be a non-empty string"),
    (dict(gpu_name=None), "gpu_name must be a non-empty string"),
    (dict(fp16="yes"), "fp16 must be True or False"),
    (dict(shapes=(8, 8)), "shapes must be SegmentShapes"),
])
def test_key_validates(key, change, message):
    data = {**key.to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        EngineKey(**data)


def test_timing_cache_is_per_tensorrt_and_gpu(tmp_path, key):
    from dataclasses import replace

    path = timing_cache_path(tmp_path, key)
    assert path.name == "timing_trt10.7.0_NVIDIA-GeForce-RTX-4090_sm8.9.cache"
    assert timing_cache_path(tmp_path, replace(key, segment="up.0", shapes=replace(SHAPES, batch=2))) == path
    assert timing_cache_path(tmp_path, replace(key, trt_version="10.8.0")) != path
    assert timing_cache_path(tmp_path, replace(key, gpu_name="NVIDIA A100")) != path


# --------------------------------------------------------------------------- the cache on disk

def test_cached_engine_is_found_only_with_its_sidecar(tmp_path, key):
    assert cache_status(key, tmp_path) == "missing" and find_engine(key, tmp_path) is None
    path = write_engine(key, tmp_path, b"serialized engine", build_seconds=1.5)
    assert cache_status(key, tmp_path) == "ok" and find_engine(key, tmp_path) == path
    assert listing(tmp_path) == sorted([path.name, key.sidecar(tmp_path).name])  # no temp files left
    record = json.loads(key.sidecar(tmp_path).read_text())
    assert record["key"] == key.to_dict() and record["engine_bytes"] == len(b"serialized engine")
    assert record["build_seconds"] == 1.5


def test_sidecar_mismatch_is_stale_and_not_used(tmp_path, key, caplog):
    path = write_engine(key, tmp_path, b"serialized engine")
    sidecar = key.sidecar(tmp_path)
    record = json.loads(sidecar.read_text())
    record["key"]["gpu_name"] = "NVIDIA A100"  # what another machine would have written under this name
    record["key"]["trt_version"] = "8.6.1"
    sidecar.write_text(json.dumps(record))
    assert cache_status(key, tmp_path) == "stale: built for a different gpu_name, trt_version"
    with caplog.at_level(logging.WARNING, logger="netbend.tensorrt"):
        assert find_engine(key, tmp_path) is None
    assert "not using" in caplog.text and "it will be rebuilt" in caplog.text and path.name in caplog.text


@pytest.mark.parametrize("damage,reason", [
    ("no sidecar", "has no sidecar"),
    ("unreadable sidecar", "unreadable sidecar"),
    ("truncated engine", "truncated"),
])
def test_damaged_cache_entries_are_stale(tmp_path, key, damage, reason):
    path = write_engine(key, tmp_path, b"serialized engine")
    if damage == "no sidecar":
        key.sidecar(tmp_path).unlink()
    elif damage == "unreadable sidecar":
        key.sidecar(tmp_path).write_text("{not json")
    else:
        path.write_bytes(b"serialized")
    assert cache_status(key, tmp_path).startswith("stale: ") and reason in cache_status(key, tmp_path)
    assert find_engine(key, tmp_path) is None


def test_rewriting_an_engine_replaces_both_files(tmp_path, key):
    write_engine(key, tmp_path, b"old engine")
    write_engine(key, tmp_path, b"the new, longer engine")
    assert key.path(tmp_path).read_bytes() == b"the new, longer engine"
    assert cache_status(key, tmp_path) == "ok"
    assert len(listing(tmp_path)) == 2


def test_cache_dir_from_the_environment(tmp_path, monkeypatch):
    assert str(default_cache_dir({"NETBEND_ENGINE_CACHE": "/e", "XDG_CACHE_HOME": "/x"})) == "/e"
    assert str(default_cache_dir({"XDG_CACHE_HOME": "/x"})) == "/x/netbend/engines"
    assert str(default_cache_dir({"NETBEND_ENGINE_CACHE": "", "XDG_CACHE_HOME": "/x"})) == "/x/netbend/engines"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir({}) == tmp_path / ".cache" / "netbend" / "engines"
    monkeypatch.setenv("NETBEND_ENGINE_CACHE", str(tmp_path / "engines"))
    assert default_cache_dir() == tmp_path / "engines"  # os.environ by default


# --------------------------------------------------------------------------- without TensorRT or a GPU

def test_missing_tensorrt_says_how_to_install(monkeypatch, tiny):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt now raises ImportError
    with pytest.raises(TensorRTUnavailable, match="^TensorRT is not installed: pip install tensorrt \\(needs an "
                                                  "NVIDIA GPU and driver\\)$"):
        require_tensorrt()
    with pytest.raises(TensorRTUnavailable):
        build_all(tiny, (64, 64))
    assert issubclass(TensorRTUnavailable, ImportError)


def build_engines_args(*argv):
    parser = argparse.ArgumentParser()
    build_engines.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def no_model_loading(monkeypatch):
    import engine.models

    def refuse(*args, **kwargs):
        raise AssertionError("build-engines loaded a model before checking the machine")

    monkeypatch.setattr(engine.models, "load_model", refuse)


def test_build_engines_without_a_gpu_exits_2(monkeypatch, capsys, no_model_loading):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert build_engines.run(build_engines_args("--model", "tiny", "--size", "512x512")) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"netbend: error: {NO_GPU}\n"


def test_build_engines_without_tensorrt_exits_2(monkeypatch, capsys, no_model_loading):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    assert build_engines.run(build_engines_args("--model", "tiny")) == 2
    assert capsys.readouterr().err == f"netbend: error: {TRT_INSTALL_HINT}\n"


@pytest.mark.parametrize("size,message", [
    ("512", "write WIDTHxHEIGHT"),
    ("512x500", "multiples of 64"),
    ("32x32", "multiples of 64"),
    ("axb", "write WIDTHxHEIGHT"),
])
def test_build_engines_refuses_a_bad_size_first(capsys, no_model_loading, size, message):
    assert build_engines.run(build_engines_args("--model", "tiny", "--size", size)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netbend: error: bad --size {size!r}") and message in err and err.count("\n") == 1


def test_build_engines_refuses_a_bad_batch(capsys, no_model_loading):
    assert build_engines.run(build_engines_args("--batch", "0")) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- the build loop, with a stand-in TensorRT

class _FakeInput:
    def __init__(self, value):
        self.name = value.name
        self.shape = tuple(d.dim_value if d.HasField("dim_value") else -1
                           for d in value.type.tensor_type.shape.dim)


class _FakeNetwork:
    inputs = ()

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


class _FakeOnnxParser:
    num_errors = 0

    def __init__(self, network, logger):
        self.network = network

    def parse_from_file(self, path):
        import onnx

        model = onnx.load(path)
        onnx.checker.check_model(model)
        self.network.inputs = [_FakeInput(v) for v in model.graph.input]
        self.network.name = model.graph.output[0].name
        return True


class _FakeTimingCache:
    def __init__(self, blob):
        self.blob = bytes(blob)

    def serialize(self):
        return self.blob + b"+"


class _FakeConfig:
    def __init__(self):
        self.flags, self.pools, self.cache = set(), {}, None

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def set_flag(self, flag):
        self.flags.add(flag)

    def create_timing_cache(self, blob):
        return _FakeTimingCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class _FakeBuilder:
    def __init__(self, built):
        self.built = built

    def create_network(self, flags):
        assert flags == 0
        return _FakeNetwork()

    def create_builder_config(self):
        return _FakeConfig()

    def build_serialized_network(self, network, config):
        self.built.append((network, config))
        return f"engine {network.name} {sorted(config.flags)}".encode()


def fake_tensorrt(built):
    """Just enough of TensorRT 10's builder API to run build_engine and build_all on CPU:
    it checks what it is given (a parseable ONNX file with fixed input shapes, the
    builder settings) and returns a made-up engine. Says nothing about real TensorRT."""
    import types

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0.0-fake"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")
    trt.Builder = lambda logger: _FakeBuilder(built)
    trt.OnnxParser = _FakeOnnxParser
    return trt


def test_build_all_builds_what_is_missing_and_reuses_the_rest(tmp_path, monkeypatch):
    import engine.tensorrt as tensorrt_module
    from engine.tiny import tiny_model

    tiny = tiny_model(seed=0)  # its own: export refuses a U-Net that earlier tests' pipelines left hooked

    built = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(built))
    monkeypatch.setattr(tensorrt_module, "_LOGGER", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    identity = {"trt_version": "10.0.0-fake", "gpu_name": "Fake GPU", "compute_capability": "9.0"}
    monkeypatch.setattr(tensorrt_module, "runtime_identity", lambda device=None: identity)
    stages = []
    paths = build_all(tiny, (64, 64), tmp_path, "fp32", lambda name, stage: stages.append((name, stage)))
    names = list(paths)
    assert names[:2] == ["time", "conv_in"] and len(names) == 12
    assert stages == [(n, s) for n in names for s in ("export", "build", "built")]
    assert [config.flags for _, config in built] == [set()] * 12  # fp32: no FP16 flag
    assert all(config.pools == {"workspace": tensorrt_module.WORKSPACE_BYTES} for _, config in built)
    down = dict(zip(names, built))["down.0"][0]
    assert [(i.name, i.shape) for i in down.inputs] == [("h", (1, 16, 8, 8)), ("emb", (1, 64)),
                                                       ("context", (1, 77, 32))]
    timing = tmp_path / "timing_trt10.0.0-fake_Fake-GPU_sm9.0.cache"
    assert timing.read_bytes() == b"+" * 12  # loaded before and saved after every build
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".cache"] + [".engine"] * 12 + [".json"] * 12  # no ONNX
    assert all(cache_status(EngineKey(**json.loads(p.with_suffix(".json").read_text())["key"]), tmp_path) == "ok"
               for p in paths.values())

    # again: nothing to build; a damaged entry and a forced segment are rebuilt
    paths["mid"].with_suffix(".json").unlink()
    stages.clear()
    again = build_all(tiny, (64, 64), tmp_path, "fp32", lambda name, stage: stages.append((name, stage)))
    assert again == paths
    assert [s for s in stages if s[1] != "cached"] == [("mid", "export"), ("mid", "build"), ("mid", "built")]
    stages.clear()
    build_all(tiny, (64, 64), tmp_path, "fp32", lambda name, stage: stages.append((name, stage)), force=True,
              names=["out"])
    assert stages == [("out", "export"), ("out", "build"), ("out", "built")]
    with pytest.raises(ValueError, match="load it in torch.float16 to build fp16 engines"):
        build_all(tiny, (64, 64), tmp_path, "fp16")
    with pytest.raises(ValueError, match="multiple of 8"):
        build_all(tiny, (64, 96), tmp_path, "fp32")


# --------------------------------------------------------------------------- on a GPU with TensorRT

@pytest.fixture(scope="module")
def gpu_engines(tmp_path_factory):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from engine.tiny import tiny_model

    model = tiny_model(seed=0, device="cuda", dtype=torch.float16)
    cache = tmp_path_factory.mktemp("engines")
    stages = []
    paths = build_all(model, (64, 64), cache, "fp16", lambda name, stage: stages.append((name, stage)))
    return model, cache, paths, stages


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_engines_match_eager(gpu_engines):
    from engine.tensorrt import load_engines

    model, cache, paths, stages = gpu_engines
    names = list(paths)
    assert [s for s in stages if s[1] == "built"] == [(n, "built") for n in names]
    engines = load_engines(paths)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g).to("cuda", torch.float16)  # (B, C, H, W)
    context = model.encode_prompt(["a test"])  # (B, L, D) fp16 on cuda
    t = torch.tensor([500], device="cuda")
    seg = SegmentedUNet(model.unet)
    try:
        for name, (args, eager) in chain_calls(seg, x, t, context).items():
            got = engines[name](*args)
            got, eager = ((got[0], *got[1]), (eager[0], *eager[1])) if name.startswith("down") else ((got,), (eager,))
            for a, b in zip(got, eager, strict=True):
                assert a.shape == b.shape and a.dtype == b.dtype, name
                torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2, msg=name)
        with torch.no_grad():
            expected = model.unet(x, t, encoder_hidden_states=context).sample
        trt = SegmentedUNet(model.unet, backend="tensorrt", bender=seg.bender, runners=engines)
        got = trt(x, t, encoder_hidden_states=context).sample
        torch.testing.assert_close(got, expected, atol=3e-2, rtol=3e-2)
    finally:
        seg.remove()


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_second_build_reuses_the_cache(gpu_engines):
    model, cache, paths, _ = gpu_engines
    mtimes = {name: p.stat().st_mtime_ns for name, p in paths.items()}
    stages = []
    again = build_all(model, (64, 64), cache, "fp16", lambda name, stage: stages.append((name, stage)))
    assert again == paths
    assert stages == [(name, "cached") for name in paths]
    assert {name: p.stat().st_mtime_ns for name, p in again.items()} == mtimes
    assert list(cache.glob("timing_trt*.cache"))  # the timing cache was saved for the next size
