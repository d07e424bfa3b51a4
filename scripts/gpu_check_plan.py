"""What gpu-check runs on the lent GPU machine: the stages with their time limits, the
bench arguments, what the GPU image holds, which wheels travel and which imports do not,
and the plan's own checks (which tests carry the gpu marker, whether `netbend` parses a
stage's arguments)."""
from __future__ import annotations

import ast
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WHEELS = ".whl"  # ignored by .gitignore; the device README's name for carried wheels
GL_DIR = ROOT / ".gl"  # ignored too: the GL loaders the image lacks, as .deb files (device README)
GL_PACKAGES = ("libvulkan1", "libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2")
NVIDIA_EGL_VENDOR = "/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json"
CARRY_LIMIT = 64 * 1024 * 1024  # the working tree and every carried path, together
RUN_BUDGET_S = 540  # 9 minutes for the whole run on the device
REPORT_RESERVE_S = 10  # kept back from the stages for writing the report

# The GPU image's Python (device notes: /work/.library/device/KINDS.md, read 2026-11-17).
TARGET_PYTHON = "3.12"
TARGET_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                    "manylinux2014_x86_64", "manylinux1_x86_64")
# What that image already holds (normalised names); only what is missing is carried.
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
# Carried as wheels: what the stages import and the image lacks, with the pure-python
# requirements of those that the image lacks too. Versions: the ones netbend is tested with.
WHEELS = {
    "diffusers": "0.42.1",
    "importlib-metadata": "10.2.0",  # diffusers requires it
    "lazy-importer": "0.1.0",  # importlib-metadata 10 requires it on Python < 3.15
    "kornia": "0.9.0",
    "kornia-rs": "0.2.0",  # kornia requires it; a compiled wheel, picked for cp312 manylinux
    "moderngl": "5.13.0",  # the CUDA-GL interop test draws with it (EGL)
    "glcontext": "3.1.0",  # moderngl's context loader
}
# Imported somewhere on the stages' code paths, deliberately not carried, and why.
NOT_CARRIED = {
    "tensorrt": "the GPU image has no TensorRT, and PyPI's tensorrt-cu13-libs (11.4.0.106, read 2026-12-01) is "
                "a source package that fetches the libraries from NVIDIA's index while installing, which that "
                "machine cannot reach; the tensorrt stage and tests run only where `import tensorrt` works",
    "av": "MP4 encoding (render, recording): no stage encodes video",
    "glfw": "a window: the machine has no display; the interop test uses EGL through moderngl",
    "sounddevice": "a line-in: no stage records audio (the bench simulates the feature thread)",
    "python-osc": "OSC: no stage opens a socket",
    "tomli-w": "preset saving: no stage writes a preset",
    "librosa": "a test extra for feature cross-checks, not on the GPU stages",
    "soundfile": "audio files: no stage reads one",
}
# Top-level module names whose distribution has another name (for modules not installed here).
MODULE_DISTRIBUTIONS = {"PIL": "pillow", "cv2": "opencv-python-headless", "yaml": "pyyaml", "cuda": "cuda-bindings",
                        "pythonosc": "python-osc", "tomli_w": "tomli-w", "kornia_rs": "kornia-rs",
                        "importlib_metadata": "importlib-metadata", "google": "protobuf"}

SD = ["--model", "sd-turbo-arch", "--size", "512x512", "--steps", "1", "--bends", "2", "--device", "cuda",
      "--frames", "50", "--warmup", "10"]
SMOKE = ["--model", "tiny", "--size", "64x64", "--steps", "1", "--bends", "2", "--device", "cpu",
         "--frames", "3", "--warmup", "1"]
GPU_TEST_MARK = "gpu"
BUILD_ENGINES = ["build-engines", "--model", "sd-turbo-arch", "--size", "512x512", "-q"]  # before bench-tensorrt


@dataclass
class Stage:
    name: str
    limit_s: int
    what: str
    bench: Optional[list[str]] = None  # `netbend bench` arguments (without the model/size/… above)
    needs: Optional[str] = None  # a module that must import there, else the stage is skipped with why


STAGES = [
    Stage("environment", 15, "nvidia-smi, python, torch and CUDA versions"),
    Stage("install", 60, "pip install --no-index --no-deps the carried wheels, then netbend's wheel built from the "
                         "checkout, into one folder on PYTHONPATH; import check"),
    Stage("gpu-tests", 90, "python3 -m pytest -m gpu on the test files that hold gpu tests"),
    Stage("bench-eager", 90, "sd-turbo-arch 512x512, 1 step, TAESD, 2 bends, eager, with diffusers' img2img "
                             "pipeline as the peer", bench=["--backend", "eager", "--peer", "diffusers"]),
    Stage("bench-compile", 150, "the same on the compile back-end (inductor, CUDA graphs): churn and "
                                "recompile counts, speed-up over an eager twin", bench=["--backend", "compile"]),
    Stage("bench-trace", 60, "the same on the trace back-end (TorchScript segments and VAE)",
          bench=["--backend", "trace"]),
    Stage("bench-mini", 45, "mini at its default size, eager", bench=["--model", "mini"]),
    Stage("bench-tensorrt", 200, "netbend build-engines at 512x512, then the bench on the tensorrt back-end",
          bench=["--backend", "tensorrt"], needs="tensorrt"),
]


def gpu_test_files() -> dict[Path, list[str]]:
    """Test files holding tests marked ``pytest.mark.gpu``: file -> test names."""
    found = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        names = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for dec in node.decorator_list:
                    if ast.unparse(dec).endswith(f"mark.{GPU_TEST_MARK}"):
                        names.append(node.name)
        if names:
            found[path] = names
    return found


def mini_weights(root: Path = ROOT) -> Optional[Path]:
    index = root / "engine" / "weights" / "mini" / "model_index.json"
    return index if index.is_file() else None


def bench_argv(stage: Stage, smoke: bool, json_out: str) -> list[str]:
    base = list(SMOKE if smoke else SD)
    args = list(stage.bench)
    if "--model" in args:  # mini: its own default size
        i = base.index("--model")
        base[i + 1] = args[args.index("--model") + 1]
        j = base.index("--size")
        del base[j:j + 2]
        del args[args.index("--model"):args.index("--model") + 2]
    return ["bench", *base, *args, "--json", json_out]


def check_bench_argv(argv: list[str]) -> Optional[str]:
    """None when `netbend` parses these arguments (a bench: with the options the plan reads), else why not."""
    sys.path.insert(0, str(ROOT))
    from live.cli.parser import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return f"netbend does not accept: {shlex.join(argv)}"
    for name in ("model", "backend", "peer", "steps", "bends", "frames", "warmup", "device"):
        if argv[0] == "bench" and not hasattr(args, name):
            return f"netbend bench has no --{name}"
    return None
