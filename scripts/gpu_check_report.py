"""The report of a run: gpu-check.json (every stage, every bench JSON) and gpu-check.md
(the stage table and the bench figures lifted into one table)."""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from gpu_check_plan import RUN_BUDGET_S


def write_report(out: Path, results: list, smoke: bool, elapsed_s: float) -> None:
    """gpu-check.json and gpu-check.md into ``out`` from the stages' results; the markdown is printed too."""
    report = {
        "gpu_check": 1,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "smoke": smoke,
        "budget_s": RUN_BUDGET_S,
        "elapsed_s": round(elapsed_s, 1),
        "stages": [{k: v for k, v in vars(r).items() if k != "data"} for r in results],
        "environment": next((r.data for r in results if r.name == "environment"), {}),
        "gpu_tests": next((r.data for r in results if r.name == "gpu-tests"), {}),
        "benches": {r.name: r.data for r in results if r.name.startswith("bench") and r.data},
        "not_timed": {"StreamDiffusion": "gpu-check carries no StreamDiffusion wheel"},
    }
    write_atomically(out / "gpu-check.json", json.dumps(report, indent=2) + "\n")
    write_atomically(out / "gpu-check.md", markdown(report))
    print((out / "gpu-check.md").read_text())


def _get(d: dict, *keys, digits: int = 2):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return "–"
        d = d[k]
    return f"{d:.{digits}f}" if isinstance(d, float) else str(d)


def markdown(report: dict) -> str:
    env = " / ".join(report["environment"].get("lines", [])) or "unknown"
    lines = [f"# gpu-check {report['date']}{' (smoke: CPU, tiny)' if report['smoke'] else ''}", "",
             f"Machine: {env}", f"Elapsed {report['elapsed_s']} s of a {report['budget_s']} s budget.", "",
             "| stage | status | s | limit s | note |", "| --- | --- | --- | --- | --- |"]
    for s in report["stages"]:
        note = s["reason"] or (report["gpu_tests"].get("summary", "") if s["name"] == "gpu-tests" else "")
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']} | {s['limit_s']} | {note} |")
    lines += ["", "| bench | backend | model | size | fps (bends on / off) | frame p50 / p95 / p99 ms | jitter ms | "
              "audio-to-frame p50 / p95 / p99 ms | bend overhead % | churn max / median ms | recompiles | "
              "speed-up over eager | peer (diffusers) ratio, bends on / off |",
              "| " + " | ".join(["---"] * 13) + " |"]
    for name, b in report["benches"].items():
        size = "x".join(str(v) for v in b.get("size", [])) or "–"
        recompiles = _get(b, "compiles", "recompiles_during_measurement")
        if b.get("compiles"):
            before, after = b["compiles"]["before_measurement"], b["compiles"]["after_measurement"]
            recompiles += f" (graphs {before['graphs']} → {after['graphs']})"
        elif b.get("traces"):
            t = b["traces"]
            recompiles = (f"{t['retraces_during_measurement']} retraces (TorchScript graphs "
                          f"{t['before_measurement']} → {t['after_measurement']})")
        lines.append(" | ".join([
            f"| {name}", _get(b, "backend"), _get(b, "model"), size,
            f"{_get(b, 'fps')} / {_get(b, 'fps_no_bends')}",
            f"{_get(b, 'frame_ms', 'p50')} / {_get(b, 'frame_ms', 'p95')} / {_get(b, 'frame_ms', 'p99')}",
            _get(b, "jitter_ms"),
            f"{_get(b, 'audio_to_frame_ms', 'p50')} / {_get(b, 'audio_to_frame_ms', 'p95')} / "
            f"{_get(b, 'audio_to_frame_ms', 'p99')}",
            _get(b, "bend_overhead", "overhead_pct"),
            f"{_get(b, 'bend_changes', 'max_ms')} / {_get(b, 'bend_changes', 'median_ms')}",
            recompiles, _get(b, "speedup_over_eager", "ratio"),
            f"{_get(b, 'peer', 'ratio')} / {_get(b, 'peer', 'ratio_no_bends')}"]) + " |")
    lines += ["", f"Not timed: StreamDiffusion ({report['not_timed']['StreamDiffusion']}).", ""]
    return "\n".join(lines)


def write_atomically(path: Path, text: str) -> None:
    # not engine.atomic's: importing engine imports kornia, which the GPU image lacks until the
    # install stage puts it on the stages' PYTHONPATH (never on this process's)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
