"""scripts/gpu-check: the dry run CI runs (the plan, and that everything it names exists),
and the report the real run writes. The real run needs the GPU machine; its CPU twin
(`scripts/gpu-check --smoke`) takes minutes and is run by hand."""
import importlib
import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu-check"


def gpu_check(*args, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def modules():
    """The gpu_check_* modules beside the script, imported from there as the script imports them."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield SimpleNamespace(**{name: importlib.import_module(f"gpu_check_{name}")
                                 for name in ("plan", "imports", "wheels", "report")})
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_dry_run_prints_the_plan_and_finds_everything_it_names(tmp_path, modules):
    run = gpu_check("--dry-run", "--wheels", str(tmp_path / "not-prepared"))
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for stage in modules.plan.STAGES:
        assert stage.name in out
    assert "--model sd-turbo-arch --size 512x512 --steps 1 --bends 2 --device cuda" in out
    assert "--backend eager --peer diffusers" in out and "--backend compile" in out and "--backend tensorrt" in out
    assert "test_gpu_engines_match_eager" in out and "test_pinned_packing_equals_to_uint8_and_reuses_its_ring" in out
    assert "run scripts/gpu-check --prepare" in out  # the wheels are not there: it says how to get them
    assert "diffusers==" in out and "kornia==" in out
    assert "ready (every command, test and wheel named above exists)" in out
    assert sum(s.limit_s for s in modules.plan.STAGES if s.needs is None) <= modules.plan.RUN_BUDGET_S


def test_dry_run_fails_on_a_folder_without_the_planned_wheels(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "diffusers-0.1.0-py3-none-any.whl").write_bytes(b"")
    run = gpu_check("--dry-run", "--wheels", str(folder))
    assert run.returncode == 1
    assert "NOT READY" in run.stderr
    assert "diffusers==0.42.1: the folder has diffusers-0.1.0-py3-none-any.whl" in run.stderr
    assert "kornia==0.9.0: no wheel" in run.stderr


def test_every_import_on_the_stages_paths_is_in_the_image_carried_or_explained(modules):
    tests = list(modules.plan.gpu_test_files())
    found = modules.imports.stage_imports(["live.cli", "live.cli.bench", "live.cli.peers", "engine.models"], tests)
    assert "diffusers" in found and "kornia" in found  # lazily imported ones are found too
    assert "engine" not in found and "torch" in found
    installed = metadata.packages_distributions()
    carried = {modules.wheels.normalise(n) for n in modules.plan.WHEELS}
    for module in found:
        dist = modules.imports.distribution_of(module, installed)
        assert dist in modules.plan.IMAGE_PACKAGES or dist in carried or dist in modules.plan.NOT_CARRIED, module


def test_report_table_lifts_the_bench_figures_and_marks_missing_ones(modules):
    bench = {"backend": "compile", "model": "sd-turbo-arch", "size": [512, 512], "fps": 101.5, "fps_no_bends": 104.0,
             "frame_ms": {"p50": 9.5, "p95": 10.25, "p99": 11.0}, "jitter_ms": 1.5,
             "audio_to_frame_ms": {"p50": 15.0, "p95": 19.5, "p99": 20.0},
             "bend_overhead": {"overhead_pct": 2.5}, "bend_changes": {"max_ms": 12.0, "median_ms": 9.75},
             "compiles": {"before_measurement": {"graphs": 12}, "after_measurement": {"graphs": 12},
                          "recompiles_during_measurement": 0},
             "speedup_over_eager": {"ratio": 2.25}, "peer": None}
    report = {"date": "2026-12-01T00:00:00+00:00", "smoke": False, "budget_s": 540, "elapsed_s": 300.0,
              "environment": {"lines": ["NVIDIA X, 1, 2 MiB"]}, "gpu_tests": {"summary": "3 passed in 9s"},
              "stages": [{"name": "gpu-tests", "status": "ok", "seconds": 9.0, "limit_s": 90, "reason": ""},
                         {"name": "bench-tensorrt", "status": "skipped", "seconds": 0.0, "limit_s": 0,
                          "reason": "`import tensorrt` fails here"}],
              "benches": {"bench-compile": bench}, "not_timed": {"StreamDiffusion": "not carried"}}
    text = modules.report.markdown(report)
    assert "Machine: NVIDIA X, 1, 2 MiB" in text
    assert "| gpu-tests | ok | 9.0 | 90 | 3 passed in 9s |" in text
    assert "| bench-tensorrt | skipped | 0.0 | 0 | `import tensorrt` fails here |" in text
    row = next(line for line in text.splitlines() if line.startswith("| bench-compile | compile"))
    assert "101.50 / 104.00" in row and "9.50 / 10.25 / 11.00" in row and "15.00 / 19.50 / 20.00" in row
    assert "0 (graphs 12 → 12)" in row and "2.25" in row and row.endswith("– / – |")  # no peer in this one
