"""`--dry-run`: print the plan and check, on a CPU here, that every wheel, command, model
and test it names exists and that every import on the stages' paths is in the GPU image,
carried, or not carried for a stated reason."""
from __future__ import annotations

import importlib.metadata as metadata
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gpu_check_imports import distribution_of, requirement_gaps, stage_imports
from gpu_check_plan import (BUILD_ENGINES, CARRY_LIMIT, GL_DIR, IMAGE_PACKAGES, NOT_CARRIED, REPORT_RESERVE_S, ROOT,
                            RUN_BUDGET_S, STAGES, TARGET_PLATFORMS, TARGET_PYTHON, WHEELS, bench_argv,
                            check_bench_argv, gpu_test_files, mini_weights)
from gpu_check_wheels import mib, missing_wheels, normalise, travelling_bytes, wheel_files


def dry_run(folder: Path) -> int:
    tests = gpu_test_files()
    problems = print_stages(tests)
    problems += missing_tools()
    print_wheels()
    problems += check_wheel_folder(folder) if folder.is_dir() else say_how_to_prepare(folder)
    problems += requirement_gaps()
    problems += print_missing_imports(list(tests))
    if problems:
        print("\ngpu-check --dry-run: NOT READY", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("\ngpu-check --dry-run: ready (every command, test and wheel named above exists)")
    return 0


def print_stages(tests: dict[Path, list[str]]) -> list[str]:
    """Print the stages with their commands and tests; the problems found in them."""
    problems: list[str] = []
    print(f"gpu-check plan (run budget {RUN_BUDGET_S} s; each stage stops at its own limit)\n")
    total = 0
    for stage in STAGES:
        total += stage.limit_s if stage.needs is None else 0
        print(f"  {stage.name:15s} {stage.limit_s:4d} s  {stage.what}")
        if stage.bench:
            argv = bench_argv(stage, smoke=False, json_out=f"WORK/{stage.name}.json")
            print(f"  {'':15s}         python3 -m live.cli {shlex.join(argv)}")
            why = check_bench_argv(argv)
            if why:
                problems.append(f"{stage.name}: {why}")
        if stage.needs == "tensorrt":
            print(f"  {'':15s}         first: python3 -m live.cli {shlex.join(BUILD_ENGINES)}")
            why = check_bench_argv(BUILD_ENGINES)
            if why:
                problems.append(f"{stage.name}: {why}")
        if stage.needs:
            print(f"  {'':15s}         runs only if `import {stage.needs}` works there, in the time left; "
                  f"else the report says why: {NOT_CARRIED.get(stage.needs, '')}")
        if stage.name == "bench-mini" and mini_weights() is None:
            print(f"  {'':15s}         SKIP there as things stand: engine/weights/mini/model_index.json is not in "
                  "this checkout (mini is being trained)")
        if stage.name == "gpu-tests":
            for path, names in tests.items():
                print(f"  {'':15s}         {path.relative_to(ROOT)}: {', '.join(names)}")
    print(f"  {'StreamDiffusion':15s}    -    not timed: gpu-check carries no StreamDiffusion wheel")
    if not tests:
        problems.append("no test in tests/ carries the gpu marker")
    if total > RUN_BUDGET_S - REPORT_RESERVE_S:
        problems.append(f"the stages' limits add up to {total} s, over the {RUN_BUDGET_S - REPORT_RESERVE_S} s budget")
    print(f"\n  limits of the stages that always run: {total} s of {RUN_BUDGET_S} s")
    return problems


def missing_tools() -> list[str]:
    problems = []
    for tool in ("git",):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not on PATH here")
    for module in ("pip", "pytest"):
        if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode != 0:
            problems.append(f"python -m {module} is not available here")
    return problems


def print_wheels() -> None:
    print("\nwheels (for CPython 3.12 manylinux x86_64):")
    for name, version in WHEELS.items():
        try:
            here = metadata.version(name)
        except metadata.PackageNotFoundError:
            here = None
        note = "" if here == version else f"  (installed here: {here or 'none'}; the plan carries {version})"
        print(f"  {name}=={version}{note}")


def check_wheel_folder(folder: Path) -> list[str]:
    """The prepared folder: the planned wheels, the size of what travels, and pip's verdict."""
    wrong = missing_wheels(folder)
    problems = [f"{folder.name}: {w}" for w in wrong]
    tree, carried = travelling_bytes([folder, GL_DIR])
    print(f"  in {folder}: {len(wheel_files(folder))} wheels; working tree {mib(tree)} + carried {mib(carried)} "
          f"= {mib(tree + carried)} of {mib(CARRY_LIMIT)}")
    debs = sorted(p.name.split("_")[0] for p in GL_DIR.glob("*.deb"))
    print(f"  .gl: {', '.join(debs) if debs else 'none (the CUDA-GL interop test will find no EGL there)'}")
    if tree + carried > CARRY_LIMIT:
        problems.append(f"the working tree and {folder.name} are {mib(tree + carried)}, over 64 MiB")
    if not wrong:
        problems += pip_refusal(folder)
    return problems


def pip_refusal(folder: Path) -> list[str]:
    """Would pip there take the wheels? The same install, dry, for CPython 3.12 manylinux."""
    platforms = [a for p in TARGET_PLATFORMS for a in ("--platform", p)]
    with tempfile.TemporaryDirectory() as target:
        dry = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "-q", "--no-index",
                              "--no-deps", "--only-binary=:all:", "--python-version", TARGET_PYTHON,
                              "--implementation", "cp", *platforms, "--target", target,
                              *sorted(str(p) for p in folder.glob("*.whl"))],
                             capture_output=True, text=True)
    if dry.returncode != 0:
        return [f"pip would not install {folder.name} for CPython {TARGET_PYTHON}: {dry.stderr.strip()[-500:]}"]
    print(f"  pip accepts all of them for CPython {TARGET_PYTHON} manylinux x86_64 (pip install --dry-run)")
    return []


def say_how_to_prepare(folder: Path) -> list[str]:
    tree, _ = travelling_bytes([])
    print(f"  {folder} does not exist: run scripts/gpu-check --prepare {os.path.relpath(folder, ROOT)} before the "
          f"device call (working tree alone: {mib(tree)})")
    return []


def print_missing_imports(tests: list[Path]) -> list[str]:
    """Print the stages' third-party imports the image lacks; those neither carried nor explained are problems."""
    problems = []
    installed = metadata.packages_distributions()
    # what the stages load: the CLI, its bench and build-engines commands (imported lazily by
    # live.cli), the peer, TensorRT, and the models with mini
    entries = ["live.cli", "live.cli.bench", "live.cli.render", "live.cli.peers", "live.cli.build_engines",
               "engine.tensorrt", "engine.models", "engine.mini"]
    carried = {normalise(n) for n in WHEELS}
    print("\nthird-party imports on the stages' code paths that the image lacks:")
    for module, files in sorted(stage_imports(entries, tests).items()):
        dist = distribution_of(module, installed)
        if dist in IMAGE_PACKAGES:
            continue
        if dist in carried:
            print(f"  {module:18s} carried ({dist})")
        elif dist in NOT_CARRIED:
            print(f"  {module:18s} not carried: {NOT_CARRIED[dist]}")
        else:
            problems.append(f"`import {module}` ({dist}; in {', '.join(sorted(files))}) is neither in the GPU image "
                            "nor carried nor listed in NOT_CARRIED with a reason")
    return problems
