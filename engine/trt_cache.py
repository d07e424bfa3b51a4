"""The TensorRT engine cache on disk, under a key that makes a stale engine impossible to
pick up. Plain Python: none of this needs TensorRT or a GPU (``engine.tensorrt`` builds
and runs the engines).

An engine is valid for exactly one ``EngineKey``: the U-Net's weights and config (a
fingerprint, see ``unet_fingerprint``), the segment, its ``SegmentShapes`` (batch, latent
size, context, dtype), the fp16 builder flag, the TensorRT version, the GPU's name and
compute capability, and ``ENGINE_FORMAT`` (bumped when the export or the build changes
what an engine computes). The key's digest is in the file name, so a change to any of
them gives a new file; a JSON sidecar beside each engine holds the whole key and the
engine's size, and an engine is used only when its sidecar matches the expected key
exactly and the size agrees. Anything else (no sidecar after an interrupted build, a
digest collision, a truncated file) is logged as stale and rebuilt. Engines and sidecars
are written atomically (``engine.atomic``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from .atomic import write_atomically
from .segment_io import SegmentShapes
from .segments import segment_kind

log = logging.getLogger("netbend.tensorrt")  # the cache's warnings belong to the TensorRT back-end

ENGINE_FORMAT = 1  # bump when engine/export.py or the build settings change what an engine computes
FINGERPRINT_SAMPLES = 4096  # elements read per weight tensor; see unet_fingerprint


# --------------------------------------------------------------------------- the key

@torch.no_grad()
def unet_fingerprint(unet: nn.Module, samples: int = FINGERPRINT_SAMPLES) -> str:
    """A SHA-256 hex digest of the U-Net's config and weights, in well under a second.

    Hashing every byte of SD's 1.7-3.4 GB of weights would take seconds on every start, so
    this hashes the config (keys starting with "_" left out: they name paths and library
    versions, not the computation), every tensor's name, shape and dtype, and the bytes
    of ``samples`` evenly spaced elements of each tensor (all of a smaller one), read on
    the tensor's own device and copied to the host once. Loading, fine-tuning, fusing a
    LoRA or changing dtype changes sampled elements; an edit that touches only unsampled
    elements would go unseen: ``netbend build-engines --force`` rebuilds regardless. The
    indices are integer arithmetic, so the same weights give the same digest on any device.
    """
    unet = getattr(unet, "unet", unet)
    digest = hashlib.sha256()
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    picks: list[Tensor] = []
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(f"\n{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        flat = tensor.detach().reshape(-1)
        n = flat.numel()
        if n > samples:
            index = torch.arange(samples, device=flat.device) * (n - 1) // (samples - 1)  # first to last
            flat = flat[index]
        picks.append(flat.contiguous().view(torch.uint8))
    if picks:
        one_device = len({p.device for p in picks}) == 1  # then one copy to the host, not one per tensor
        sampled = torch.cat(picks) if one_device else torch.cat([p.cpu() for p in picks])
        digest.update(sampled.cpu().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's computation depends on; equal keys mean a reusable engine."""

    model_hash: str  # unet_fingerprint
    segment: str  # time, conv_in, down.N, mid, up.N, out
    shapes: SegmentShapes
    trt_version: str  # tensorrt.__version__: engines do not load across versions
    gpu_name: str  # torch.cuda.get_device_name: tactics are timed on this GPU
    compute_capability: str = ""  # "8.9": engines are compiled for one SM version
    fp16: bool = True  # BuilderFlag.FP16: TensorRT may run layers in half precision
    format: int = ENGINE_FORMAT

    def __post_init__(self):
        if isinstance(self.shapes, dict):
            object.__setattr__(self, "shapes", SegmentShapes.from_dict(self.shapes))
        if not isinstance(self.shapes, SegmentShapes):
            raise ValueError(f"EngineKey.shapes must be SegmentShapes, got {type(self.shapes).__name__}")
        if not re.fullmatch(r"[0-9a-f]{16,}", str(self.model_hash)):
            raise ValueError(f"EngineKey.model_hash must be a hex digest (unet_fingerprint), got {self.model_hash!r}")
        segment_kind(self.segment)  # raises, listing the segment names
        for name in ("trt_version", "gpu_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"EngineKey.{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.fp16, bool):
            raise ValueError(f"EngineKey.fp16 must be True or False, got {self.fp16!r}")


    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["shapes"] = self.shapes.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EngineKey":
        return cls(**data)

    @property
    def digest(self) -> str:
        """16 hex digits of the SHA-256 of the whole key (canonical JSON)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def path(self, cache_dir: str | os.PathLike) -> Path:
        """``<cache>/<segment>_<b1-64x64-fp16>_<digest>.engine``."""
        return Path(cache_dir) / f"{self.segment}_{self.shapes.tag}_{self.digest}.engine"

    def sidecar(self, cache_dir: str | os.PathLike) -> Path:
        return self.path(cache_dir).with_suffix(".json")


# --------------------------------------------------------------------------- the cache on disk

def cache_status(key: EngineKey, cache_dir: str | os.PathLike) -> str:
    """"ok" when the engine for ``key`` can be used, "missing", or "stale: <why>"."""
    engine, sidecar = key.path(cache_dir), key.sidecar(cache_dir)
    if not engine.is_file():
        return "missing"
    if not sidecar.is_file():
        return "stale: the engine has no sidecar (an interrupted build?)"
    try:
        record = json.loads(sidecar.read_text())
        recorded = record["key"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"stale: unreadable sidecar {sidecar.name} ({e})"
    expected = key.to_dict()
    if recorded != expected:
        differ = sorted(k for k in set(expected) | set(recorded) if recorded.get(k) != expected.get(k))
        return f"stale: built for a different {', '.join(differ)}"
    size = engine.stat().st_size
    if record.get("engine_bytes") != size:
        return f"stale: the engine has {size} bytes, its sidecar says {record.get('engine_bytes')} (truncated?)"
    return "ok"


def find_engine(key: EngineKey, cache_dir: str | os.PathLike) -> Optional[Path]:
    """The cached engine for ``key``, or None (a stale one is logged and left to be rebuilt)."""
    status = cache_status(key, cache_dir)
    if status == "ok":
        return key.path(cache_dir)
    if status != "missing":
        log.warning("not using %s: %s; it will be rebuilt", key.path(cache_dir), status[len("stale: "):])
    return None


def write_engine(key: EngineKey, cache_dir: str | os.PathLike, engine, **info) -> Path:
    """Store a serialized engine for ``key``: the engine first, then its sidecar, so an
    engine is only ever found next to the record of what it was built for."""
    path = key.path(cache_dir)
    sidecar = key.sidecar(cache_dir)
    sidecar.unlink(missing_ok=True)  # an old sidecar must not vouch for the new bytes while they land
    write_atomically(path, engine)
    record = {"key": key.to_dict(), "digest": key.digest, "engine_bytes": path.stat().st_size,
              "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info}
    write_atomically(sidecar, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def timing_cache_path(cache_dir: str | os.PathLike, key: EngineKey) -> Path:
    """One timing cache per TensorRT version and GPU (its timings are meaningless elsewhere)."""
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", key.gpu_name).strip("-")
    return Path(cache_dir) / f"timing_trt{key.trt_version}_{gpu}_sm{key.compute_capability or 'x'}.cache"
