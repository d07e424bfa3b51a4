"""TorchScript graphs of plain functions over modules: ``TracedSegment``, the ``trace``
back-end's runner for each U-Net segment (``engine.segments``) and for the VAE passes
(``engine.pipeline_base.traced_vae``)."""
from __future__ import annotations

import logging
import warnings
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

log = logging.getLogger("netbend.segments")  # the trace back-end is one of the segments'


def _signature(value):
    """What a traced graph is specialised to: a tensor's shape, dtype, device and layout; a
    tuple's items; any other value (None, an upsample size) as itself."""
    if isinstance(value, Tensor):
        return (tuple(value.shape), value.dtype, value.device, value.stride())
    if isinstance(value, tuple):
        return tuple(_signature(v) for v in value)
    return value


def _is_tensors(value) -> bool:
    return isinstance(value, Tensor) or (isinstance(value, tuple) and bool(value)
                                         and all(isinstance(v, Tensor) for v in value))


class _SegmentModule(nn.Module):
    """One segment function as a Module whose forward takes only its tensor arguments, the
    others fixed: what ``torch.jit.trace`` needs. The modules the function runs are
    submodules (only those: TorchScript wraps every submodule it is given), so the traced
    graph reads their own parameters, not copies."""

    def __init__(self, parts: Iterable[nn.Module], fn: Callable, args: tuple):
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self._fn = fn
        self._slots = [i for i, a in enumerate(args) if _is_tensors(a)]
        self._fixed = [None if i in self._slots else a for i, a in enumerate(args)]  # no example tensors kept

    def forward(self, *tensors):
        args = list(self._fixed)
        for i, value in zip(self._slots, tensors):
            args[i] = value
        return self._fn(*args)


class TracedSegment:
    """A segment run as TorchScript: traced (``torch.jit.trace``) the first time it meets
    an input signature (shapes, dtypes, devices, strides, non-tensor arguments), then run
    from that graph, which skips the Python of every diffusers module inside the segment;
    at 64x64 on a CPU that Python is most of the U-Net's time. Tracing records one path
    through the code, so a graph is only reused for inputs of the signature it was traced
    at; a new signature traces a new graph (``traces`` counts them)."""

    def __init__(self, fn: Callable, name: str, parts: Iterable[nn.Module]):
        self.fn, self.name = fn, name
        self.parts = [p for p in parts if p is not None]  # the modules fn runs
        self.graphs: dict = {}
        self.traces = 0

    def __call__(self, *args):
        key = _signature(args)
        graph = self.graphs.get(key)
        tensors = tuple(a for a in args if _is_tensors(a))
        if graph is None:
            module = _SegmentModule(self.parts, self.fn, args)
            with warnings.catch_warnings():
                # TracerWarnings about shape-dependent Python (fixed per signature here) and
                # torch's deprecation notice for TorchScript
                warnings.simplefilter("ignore")
                graph = torch.jit.trace(module, tensors, check_trace=False)
            self.graphs[key] = graph
            self.traces += 1
            log.debug("traced segment %s for %s", self.name, key)
        return graph(*tensors)
