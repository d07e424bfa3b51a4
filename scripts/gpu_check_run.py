"""The run on the GPU machine (and its CPU twin, `--smoke`): each stage as a subprocess
with its own time limit inside the run's budget, its output in gpu-check.log."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gpu_check_imports import image_blocker
from gpu_check_plan import (BUILD_ENGINES, GL_DIR, GPU_TEST_MARK, NOT_CARRIED, NVIDIA_EGL_VENDOR, REPORT_RESERVE_S,
                            ROOT, RUN_BUDGET_S, STAGES, Stage, bench_argv, gpu_test_files)
from gpu_check_report import write_report
from gpu_check_wheels import missing_wheels


@dataclass
class Result:
    name: str
    status: str  # ok | failed | timeout | skipped
    seconds: float = 0.0
    limit_s: float = 0.0
    command: str = ""
    reason: str = ""
    tail: str = ""
    data: dict = field(default_factory=dict)


class Run:
    def __init__(self, out: Path, folder: Path, smoke: bool):
        self.out, self.folder, self.smoke = out, folder, smoke
        self.started = time.monotonic()
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.site = self.work / "site"
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if smoke:
            self.env["NETBEND_COMPILE_BACKEND"] = "aot_eager"  # inductor's CPU builds take minutes
            blocker = image_blocker(self.work / "image")
            self.env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(ROOT)])
        self.log = (out / "gpu-check.log").open("w")
        self.results: list[Result] = []

    def left(self) -> float:
        return RUN_BUDGET_S - REPORT_RESERVE_S - (time.monotonic() - self.started)

    def command(self, name: str, argv: list[str], limit: float, cwd: Path = ROOT) -> Result:
        limit = min(limit, self.left())
        result = Result(name, "failed", limit_s=round(limit), command=shlex.join(argv))
        if limit < 5:
            result.status, result.reason = "skipped", "no time left in the run's budget"
            return result
        self.log.write(f"\n===== {name} (limit {limit:.0f} s): {result.command}\n")
        self.log.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=limit)
            result.status = "ok" if proc.returncode == 0 else "failed"
            if proc.returncode != 0:
                result.reason = f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the stage and everything it started
            output, _ = proc.communicate()
            result.status, result.reason = "timeout", f"stopped at its {limit:.0f} s limit"
        result.seconds = round(time.monotonic() - t0, 1)
        self.log.write(output or "")
        self.log.flush()
        result.tail = "\n".join((output or "").strip().splitlines()[-6:])
        return result

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def stage(self, stage: Stage) -> Result:
        if stage.name == "environment":
            return self.environment(stage)
        if stage.name == "install":
            return self.install(stage)
        if stage.name == "gpu-tests":
            return self.gpu_tests(stage)
        return self.bench(stage)

    def environment(self, stage: Stage) -> Result:
        probe = ("import torch, sys; print('python', sys.version.split()[0]); print('torch', torch.__version__, "
                 "'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); "
                 "print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')")
        smi = "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; " \
              if shutil.which("nvidia-smi") else ""
        if not self.smoke and list(GL_DIR.glob("*.deb")):  # EGL for the interop test (device README)
            smi = ("for f in .gl/*.deb; do dpkg -x \"$f\" /; done; ldconfig; echo 'GL loaders unpacked from .gl'; "
                   + smi)
            if Path(NVIDIA_EGL_VENDOR).is_file():
                self.env["__EGL_VENDOR_LIBRARY_FILENAMES"] = NVIDIA_EGL_VENDOR
        r = self.command(stage.name, ["bash", "-c", f"{smi}{shlex.quote(sys.executable)} -c {shlex.quote(probe)}"],
                         stage.limit_s)
        r.data = {"lines": r.tail.splitlines()}
        return r

    def install(self, stage: Stage) -> Result:
        if self.smoke:
            return Result(stage.name, "skipped", reason="--smoke runs in this environment, nothing installed")
        wrong = missing_wheels(self.folder) if self.folder.is_dir() else [f"{self.folder} does not exist"]
        if wrong:
            return Result(stage.name, "failed", reason="carried wheels missing: " + "; ".join(wrong) +
                          " (run scripts/gpu-check --prepare here and carry the folder)")
        wheels = sorted(str(p) for p in self.folder.glob("*.whl"))
        build = self.work / "build"
        script = " && ".join([
            shlex.join(self.python("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                                   "-w", str(build), str(ROOT))),
            shlex.join(self.python("-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                   "--no-cache-dir", "--target", str(self.site), *wheels)) + " " +
            f"{shlex.quote(str(build))}/netbend-*.whl",
            f"cd {shlex.quote(str(self.work))}",
            f"PYTHONPATH={shlex.quote(str(self.site))} " + shlex.join(self.python(
                "-c", "import diffusers, kornia, engine, live.cli, engine.models; "
                      "print('installed: diffusers', diffusers.__version__, 'kornia', kornia.__version__, "
                      "'netbend from', engine.__file__)")),
        ])
        r = self.command(stage.name, ["bash", "-c", script], stage.limit_s)
        if r.status == "ok":
            self.env["PYTHONPATH"] = str(self.site)
        return r

    def gpu_tests(self, stage: Stage) -> Result:
        files = [str(p.relative_to(ROOT)) for p in gpu_test_files()]
        r = self.command(stage.name, self.python("-m", "pytest", "-m", GPU_TEST_MARK, "-q", "-rs", "-p",
                                                 "no:cacheprovider", *files), stage.limit_s)
        summary = [line for line in r.tail.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
        r.data = {"summary": summary[-1] if summary else "", "files": files}
        if r.status == "failed" and summary and "failed" not in summary[-1] and "error" not in summary[-1]:
            r.status = "ok"  # pytest exits 5 when every selected test was deselected or skipped
        return r

    def bench(self, stage: Stage) -> Result:
        skipped = self.bench_skipped(stage)
        if skipped is not None:
            return skipped
        json_out = self.work / f"{stage.name}.json"
        argv = bench_argv(stage, self.smoke, str(json_out))
        if stage.needs == "tensorrt":
            build = self.python("-m", "live.cli", *BUILD_ENGINES)
            r = self.command(stage.name + " (build)", build, stage.limit_s, cwd=self.work)
            if r.status != "ok":
                r.name = stage.name
                return r
        r = self.command(stage.name, self.python("-m", "live.cli", *argv), stage.limit_s, cwd=self.work)
        if json_out.is_file():
            r.data = json.loads(json_out.read_text())
        elif r.status == "ok":
            r.status, r.reason = "failed", "the bench wrote no JSON"
        return r

    def bench_skipped(self, stage: Stage) -> Optional[Result]:
        """The skipped result when this bench cannot run here (its module or mini's weights missing), else None."""
        if stage.needs and not self.smoke:
            probe = subprocess.run(self.python("-c", f"import {stage.needs}"), env=self.env, capture_output=True,
                                   text=True, cwd=self.work)
            if probe.returncode != 0:
                return Result(stage.name, "skipped", reason=f"`import {stage.needs}` fails here "
                              f"({probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else 'no module'}); "
                              f"{NOT_CARRIED.get(stage.needs, '')}")
        if stage.needs and self.smoke:
            return Result(stage.name, "skipped", reason=f"--smoke: {stage.needs} needs a GPU")
        if "--model" in stage.bench and stage.bench[stage.bench.index("--model") + 1] == "mini":
            if self.smoke:
                return Result(stage.name, "skipped", reason="--smoke benches tiny only")
            check = ("from engine.mini import MINI_DIR; import sys; "
                     "sys.exit(0 if (MINI_DIR / 'model_index.json').is_file() else 3)")
            probe = subprocess.run(self.python("-c", check), env=self.env, cwd=self.work, capture_output=True)
            if probe.returncode != 0:
                return Result(stage.name, "skipped", reason="mini's weights are not in this netbend "
                              "(engine/weights/mini/model_index.json missing: mini had not been trained into the "
                              "checkout when this ran)")
        return None

    def run(self) -> int:
        for stage in STAGES:
            r = self.stage(stage)
            self.results.append(r)
            print(f"{r.name:15s} {r.status:8s} {r.seconds:6.1f} s  {r.reason}", flush=True)
            if stage.name == "install" and r.status == "failed":
                print("install failed: the stages after it need the carried packages; stopping", flush=True)
                break
        self.log.close()
        write_report(self.out, self.results, self.smoke, elapsed_s=time.monotonic() - self.started)
        return 0 if all(r.status in ("ok", "skipped") for r in self.results) else 1
