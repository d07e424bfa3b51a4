"""`netbend bench` end to end on the tiny model (CPU, a few frames). Nothing here asserts
on speed: a shared CI machine makes any timed assertion flaky. The figures must exist,
be finite and positive, and describe the run that made them."""
import contextlib
import io
import json
import math

import pytest

from live.cli import main

FRAMES, WARMUP = 6, 2
TOP_KEYS = {
    "netbend_bench", "date", "command", "device", "torch", "backend", "model", "dtype", "size", "steps", "strength",
    "frames", "warmup", "setup_s", "bends", "fps", "fps_no_bends", "frame_ms", "jitter_ms", "audio_to_frame_ms",
    "step_ms", "stages_ms", "stage_sum_ms", "consistency", "bend_overhead", "bend_changes", "last_frame_finite",
    "load_average_1m", "speedup_over_eager", "compiles", "upload_path",
    "channels_last", "attention",
    "notes",
}
SUMMARY_KEYS = {"p50", "p95", "p99", "mean", "max", "n"}
STAGES = {"features", "encode", "unet", "decode", "upload"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One short bench run: (exit code, stdout JSON, --json file's JSON, stderr)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["bench", "--model", "tiny", "--frames", str(FRAMES), "--warmup", str(WARMUP),
                     "--device", "cpu", "--json", str(out)])
    printed = json.loads(stdout.getvalue())
    written = json.loads(out.read_text()) if out.exists() else None
    leftovers = [p.name for p in out.parent.iterdir() if p.name != out.name]
    return code, printed, written, stderr.getvalue(), leftovers


def _numbers(value, path=""):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")


def test_bench_prints_json_with_every_key(bench):
    code, result, _, _, _ = bench
    assert code == 0
    assert TOP_KEYS <= set(result)
    assert result["model"] == "tiny" and result["backend"] == "eager"
    assert result["size"] == [64, 64] and result["steps"] == 1
    assert result["frames"] == FRAMES and result["warmup"] == WARMUP
    assert result["device"]["type"] == "cpu" and result["device"]["name"]
    assert "netbend bench --model tiny" in result["command"]
    assert f"--frames {FRAMES}" in result["command"] and f"--warmup {WARMUP}" in result["command"]
    for key in ("frame_ms", "audio_to_frame_ms", "step_ms"):
        assert SUMMARY_KEYS <= set(result[key]), key
        assert result[key]["n"] == FRAMES
    assert set(result["stages_ms"]) == STAGES
    for stage in STAGES:
        assert SUMMARY_KEYS <= set(result["stages_ms"][stage]), stage
    assert len(result["bends"]) == 2
    assert result["notes"] and all(isinstance(n, str) for n in result["notes"])
    assert result["speedup_over_eager"] is None and result["compiles"] is None  # eager: nothing to compare
    assert result["upload_path"].startswith("host (the model runs on cpu")
    assert result["attention"] == "AttnProcessor2_0" and result["channels_last"] is False  # torch's fused SDPA


def test_bench_compile_backend_reports_speedup_and_zero_recompiles(monkeypatch):
    """The compile back-end's bench: its churn frames change every bend's operator, layer and
    param each cycle, and torch.compile's counters must not move while frames are measured."""
    monkeypatch.setenv("NETBEND_COMPILE_BACKEND", "aot_eager")  # inductor's C++ builds take minutes here
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["bench", "--model", "tiny", "--backend", "compile", "--frames", "4", "--warmup", "2",
                     "--device", "cpu", "--channels-last", "--dtype", "fp32"])
    assert code == 0
    result = json.loads(stdout.getvalue())
    assert result["backend"] == "compile" and "--backend compile" in result["command"]
    assert result["channels_last"] is True and "--channels-last --dtype" not in result["command"]
    assert "--dtype fp32 --channels-last" in result["command"] and result["dtype"] == "float32"
    compiles = result["compiles"]
    assert compiles["before_measurement"]["graphs"] > 0  # the segments really were compiled
    assert compiles["recompiles_during_measurement"] == 0
    assert compiles["after_measurement"] == compiles["before_measurement"]
    speedup = result["speedup_over_eager"]
    assert speedup["eager_ms"]["n"] == 4 and speedup["ratio"] > 0
    assert speedup["ratio"] == pytest.approx(speedup["eager_ms_p50"] / speedup["backend_ms_p50"], rel=1e-3)
    assert result["bend_changes"]["frames"] == 4 and result["last_frame_finite"] is True


def test_bench_figures_are_finite_and_positive(bench):
    _, result, _, _, _ = bench
    numbers = dict(_numbers(result))
    assert all(math.isfinite(v) for v in numbers.values()), [k for k, v in numbers.items() if not math.isfinite(v)]
    timings = {k: v for k, v in numbers.items()
               if k.split(".")[1] in ("fps", "fps_no_bends", "frame_ms", "audio_to_frame_ms", "step_ms",
                                      "stages_ms", "stage_sum_ms", "consistency")}
    assert timings and all(v > 0 for v in timings.values()), {k: v for k, v in timings.items() if v <= 0}
    assert result["jitter_ms"] >= 0
    frame = result["frame_ms"]
    assert frame["p50"] <= frame["p95"] <= frame["p99"] <= frame["max"]
    # the latency holds the whole frame it waited for
    assert result["audio_to_frame_ms"]["p50"] >= frame["p50"]


def test_bench_reports_bend_overhead_and_unchanged_hooks(bench):
    _, result, _, _, _ = bench
    overhead = result["bend_overhead"]
    assert overhead["bends"] == 2
    assert overhead["ratio"] > 0
    assert overhead["ratio"] == pytest.approx(overhead["on_ms_p50"] / overhead["off_ms_p50"], rel=1e-3)
    assert overhead["overhead_pct"] == pytest.approx((overhead["ratio"] - 1) * 100, abs=0.01)
    changes = result["bend_changes"]
    assert changes["frames"] == FRAMES
    assert changes["max_over_median"] >= 1.0
    assert isinstance(result["consistency"]["consistent"], bool)
    assert changes["hooks_before"] == changes["hooks_after"] > 0
    assert changes["unet_forward_hooks_before"] == changes["unet_forward_hooks_after"]
    assert changes["hooks_unchanged"] is True
    assert result["last_frame_finite"] is True


def test_bench_json_file_holds_the_same_json(bench):
    _, printed, written, _, leftovers = bench
    assert written == printed
    assert leftovers == [], "a temporary file was left next to --json OUT"


@pytest.mark.parametrize("argv, message", [
    (["--backend", "tensorrt"], "--backend tensorrt: no CUDA GPU"),
    (["--backend", "onnx"], "unknown --backend 'onnx'; allowed: auto, eager, compile, trace, tensorrt"),
    (["--peer", "streamdiffusion"], "unknown --peer 'streamdiffusion'; allowed: diffusers"),
    (["--size", "64x60"], "bad --size '64x60'"),
    (["--size", "big"], "bad --size 'big'"),
    (["--frames", "0"], "--frames must be >= 1"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--bends", "-1"], "--bends must be >= 0"),
    (["--steps", "0"], "stream steps must be 1..50"),
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--device", "tpu"], "bad --device 'tpu'"),
    (["--dtype", "fp8"], "unknown --dtype 'fp8'; allowed: fp16, bf16, fp32"),
])
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys, tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", "--frames", "1", "--warmup", "0", "--json", str(out), *argv])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not out.exists()


def test_json_into_a_missing_folder_fails_before_running(capsys, tmp_path):
    code = main(["bench", "--json", str(tmp_path / "nope" / "b.json")])
    assert code == 2
    assert "its folder does not exist" in capsys.readouterr().err


def test_peer_diffusers_times_the_same_work_in_the_same_run():
    """--peer diffusers: diffusers' img2img pipeline runs the stream's timesteps beside
    netbend's step (trace back-end here: its figures and the peer's come from one run)."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["bench", "--model", "tiny", "--backend", "trace", "--peer", "diffusers", "--frames", "3",
                     "--warmup", "1", "--device", "cpu"])
    assert code == 0
    result = json.loads(stdout.getvalue())
    peer = result["peer"]
    assert peer["name"] == "diffusers" and peer["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert peer["num_inference_steps"] == 2 and peer["strength"] == 0.5  # 1 step at strength 0.5
    assert peer["timesteps"] == peer["netbend_timesteps"] == [499] and peer["same_timesteps"]
    assert peer["frame_ms"]["n"] == 3
    assert peer["ratio"] == pytest.approx(peer["frame_ms"]["p50"] / result["step_ms"]["p50"], rel=1e-3)
    assert peer["netbend_step_ms_p50"] == result["step_ms"]["p50"]
    assert peer["ratio_no_bends"] > 0 and math.isfinite(peer["ratio_no_bends"])
    assert "--peer diffusers" in result["command"] and "--backend trace" in result["command"]
    assert result["speedup_over_eager"]["ratio"] > 0  # the eager twin ran beside the traced pipeline
    traces = result["traces"]
    assert traces["before_measurement"] == 14 and traces["retraces_during_measurement"] == 0  # 12 segments + 2 VAE


def test_stage_clock_times_the_real_step_stage_by_stage(tiny):
    """The replica's StageClock on StreamPipeline.step's timer: each stage is the time since
    the mark before it, so the stages add up to the whole replica frame."""
    from engine.stream import StreamConfig, StreamPipeline
    from live.cli.bench import StageClock

    pipe = StreamPipeline(tiny, StreamConfig())
    pipe.prepare()
    clock = StageClock(iter([10.0, 11.0, 13.0, 16.0, 20.0]).__next__)  # a clock read five times
    clock.start()
    pipe.step(timer=clock)
    clock("upload")
    assert clock.seconds == {"encode": 1.0, "unet": 2.0, "decode": 3.0, "upload": 4.0}
    assert sum(clock.seconds.values()) == 20.0 - 10.0


def test_bends_on_params_follow_rms_through_mapped_bends():
    """The bends-on frames are driven by engine.mappings.MappedBends, as in a show: rms over
    RMS_RANGE onto each operator's range, the operator's options kept."""
    from engine.mappings import MappedBends
    from live.cli.bench_work import OPERATOR_RANGES, RMS_RANGE, mapped_plan

    driver = mapped_plan([("rotate", "mid"), ("erode", "up.1")])
    assert isinstance(driver, MappedBends)
    rotate, erode = driver.update({"rms": RMS_RANGE[1] / 2}, 1 / 30)
    assert (rotate.operator, rotate.layer, rotate.opts) == ("rotate", "mid", OPERATOR_RANGES["rotate"][1])
    assert rotate.param == pytest.approx(math.pi) and erode.param == pytest.approx(2.5)
    top, _ = driver.update({"rms": 1.0}, 1 / 30)  # clipped at the top of the range
    assert top.param == pytest.approx(2 * math.pi)
