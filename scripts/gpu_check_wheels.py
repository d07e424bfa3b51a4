"""The carried wheels: which are in a folder, `--prepare` (download them and the GL
loaders, check that netbend's wheel builds and that everything that travels fits)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gpu_check_plan import CARRY_LIMIT, GL_DIR, GL_PACKAGES, ROOT, TARGET_PLATFORMS, TARGET_PYTHON, WHEELS


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_files(folder: Path) -> dict[str, Path]:
    """normalised distribution name -> its wheel in ``folder``."""
    found = {}
    for path in sorted(folder.glob("*.whl")):
        found[normalise(path.name.split("-")[0])] = path
    return found


def missing_wheels(folder: Path) -> list[str]:
    have = wheel_files(folder)
    wrong = []
    for name, version in WHEELS.items():
        path = have.get(normalise(name))
        if path is None:
            wrong.append(f"{name}=={version}: no wheel")
        elif path.name.split("-")[1] != version:
            wrong.append(f"{name}=={version}: the folder has {path.name}")
    return wrong


def travelling_bytes(extra: list[Path]) -> tuple[int, int]:
    """(bytes of the working tree that travels, bytes of the carried folders)."""
    try:  # what the device tool sends: tracked files and untracked ones git does not ignore
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: count every file but .git's
        listed = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if ".git" not in p.parts]
    tree = sum((ROOT / p).stat().st_size for p in listed if p and (ROOT / p).is_file())
    carried = sum(f.stat().st_size for d in extra if d.is_dir() for f in d.rglob("*") if f.is_file())
    return tree, carried


def mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def prepare(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in TARGET_PLATFORMS for a in ("--platform", p)]
    for name, version in WHEELS.items():
        if normalise(name) in wheel_files(folder) and not missing_wheels_for(folder, name):
            print(f"have      {name}=={version}")
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               TARGET_PYTHON, "--implementation", "cp", *platforms, "-d", str(folder), f"{name}=={version}"]
        print("download ", shlex.join(cmd[3:]))
        if subprocess.run(cmd).returncode != 0:
            print(f"gpu-check --prepare: pip could not download {name}=={version} for CPython {TARGET_PYTHON} "
                  "manylinux x86_64", file=sys.stderr)
            return 1
    if shutil.which("apt-get"):  # EGL for the CUDA-GL interop test: the device README's recipe
        GL_DIR.mkdir(exist_ok=True)
        lists = Path(tempfile.gettempdir()) / "gpu-check-apt-amd64"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        o = ["-oAPT::Architecture=amd64", "-oAPT::Architectures=amd64", f"-oDir::State::Lists={lists}"]
        got = subprocess.run(["apt-get", *o, "-qq", "update"], capture_output=True).returncode == 0 and \
            subprocess.run(["apt-get", *o, "-qq", "download", *GL_PACKAGES], cwd=GL_DIR,
                           capture_output=True).returncode == 0
        print(f"gl        {'downloaded' if got else 'could NOT download'} {', '.join(GL_PACKAGES)} into .gl/")
    else:
        print("gl        no apt-get here: .gl/ not made; the CUDA-GL interop test will find no EGL there")
    stale = [p for n, p in wheel_files(folder).items() if n not in {normalise(k) for k in WHEELS}]
    for path in stale:  # two versions of a package stop the whole install there
        print(f"remove    {path.name} (not in the plan)")
        path.unlink()
    with tempfile.TemporaryDirectory() as tmp:  # netbend's own wheel is built there, from the checkout
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                                "-w", tmp, str(ROOT)], capture_output=True, text=True)
        if built.returncode != 0:
            print(f"gpu-check --prepare: netbend's wheel does not build:\n{built.stderr[-2000:]}", file=sys.stderr)
            return 1
        wheel = next(Path(tmp).glob("netbend-*.whl"))
        print(f"netbend   builds: {wheel.name}, {mib(wheel.stat().st_size)} (built again there from the checkout, "
              "so the package data are not carried twice)")
    tree, carried = travelling_bytes([folder, GL_DIR])
    print(f"size      working tree {mib(tree)} + {folder.name} and .gl {mib(carried)} = {mib(tree + carried)} "
          f"of {mib(CARRY_LIMIT)}")
    if tree + carried > CARRY_LIMIT:
        print("gpu-check --prepare: what travels is over the 64 MiB limit", file=sys.stderr)
        return 1
    rel = os.path.relpath(folder, ROOT)
    print(f"ready: run(command=\"python3 scripts/gpu-check --wheels {rel}\", carry=[\"{rel}\", \".gl\"], "
          "timeout_s=600)")
    return 0


def missing_wheels_for(folder: Path, name: str) -> bool:
    return any(w.startswith(f"{name}==") for w in missing_wheels(folder))


