"""How a generated frame gets from the model to the window's texture, chosen once per show.

    cuda-gl  the frame stays on the GPU: the render thread converts it to uint8 in a device
             buffer; the window thread copies that into an OpenGL pixel buffer registered
             with CUDA and the texture is filled from it. No host round-trip.
    pinned   the frame is converted to uint8 on the GPU and copied into page-locked host
             memory (one DMA, no pageable staging), then written to the texture.
    host     the model runs on the CPU: the frame is already in host memory.

``choose_upload`` picks the first that works and says why; the show logs the choice, puts
it on the HUD and in its stats. CUDA-GL interop needs ``cuda-python`` (the ``gpu`` extra),
a CUDA model and a window whose OpenGL context is on the same NVIDIA GPU; anything less
falls back to ``pinned`` with the reason, and a failure while mapping later in the show
falls back for the rest of it (logged once) instead of stopping it.

The render thread packs (``FramePacker.pack``) and the window thread uploads
(``Display.upload``): packed frames live in a small ring of buffers, so the buffer a
published frame points at is not rewritten until ``RING`` newer frames have been packed;
the newest-wins mailbox has long dropped that frame by then.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger("netbend.upload")

UPLOAD_PATHS = ("cuda-gl", "pinned", "host")
RING = 4  # packed buffers in flight: the window holds at most one, the mailbox one


@dataclass(frozen=True)
class UploadChoice:
    path: str  # one of UPLOAD_PATHS
    reason: str  # why this one, in words for the log and the HUD

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass(frozen=True)
class DeviceImage:
    """A packed frame still on the GPU: (H, W, 3) uint8 and the event that marks it written."""

    tensor: Tensor
    ready: "torch.cuda.Event"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def dtype(self):
        return np.uint8


def choose_upload(device: torch.device, headless: bool,
                  make_interop: Optional[Callable[[], object]] = None) -> tuple[UploadChoice, object]:
    """(the choice, the interop object for cuda-gl or None). ``make_interop`` tries to set
    CUDA-GL interop up on the window's context and raises with the reason when it cannot."""
    if device.type != "cuda":
        return UploadChoice("host", f"the model runs on {device.type}: frames are already in host memory"), None
    if headless:
        return UploadChoice("pinned", "no window (headless): a pinned-memory copy is all a frame needs"), None
    if make_interop is None:
        return UploadChoice("pinned", "no OpenGL context was offered for CUDA-GL interop"), None
    try:
        interop = make_interop()
    except Exception as e:  # noqa: BLE001 - any failure means: use the copy, and say why
        return UploadChoice("pinned", f"CUDA-GL interop unavailable: {type(e).__name__}: {e}"), None
    return UploadChoice("cuda-gl", "the frame stays on the GPU: CUDA writes an OpenGL pixel buffer"), interop


def _device_uint8(image: Tensor) -> Tensor:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> (H, W, 3) uint8, contiguous, on the same device."""
    if image.dim() == 4:
        image = image[0]
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


class FramePacker:
    """The render thread's half: a generated image -> what ``Frame.image`` carries for the
    chosen path (a host uint8 array, or a ``DeviceImage`` for cuda-gl)."""

    def __init__(self, path: str):
        if path not in UPLOAD_PATHS:
            raise ValueError(f"unknown upload path {path!r}; allowed: {', '.join(UPLOAD_PATHS)}")
        self.path = path
        self._ring: list[Tensor] = []
        self._next = 0
        self._copied = None  # the pinned path's one event (each cuda-gl frame carries its own)

    def _slot(self, like: Tensor, pinned: bool) -> Tensor:
        if not self._ring or self._ring[0].shape != like.shape:
            if pinned:
                self._ring = [torch.empty(like.shape, dtype=torch.uint8, pin_memory=True) for _ in range(RING)]
            else:
                self._ring = [torch.empty_like(like) for _ in range(RING)]
            self._next = 0
        slot = self._ring[self._next]
        self._next = (self._next + 1) % RING
        return slot

    def pack(self, image: Tensor):
        if self.path == "host" or image.device.type != "cuda":
            from engine.images import to_uint8

            return to_uint8(image)
        u8 = _device_uint8(image)  # (H, W, 3) on the GPU: a quarter of the float bytes to move
        if self.path == "pinned":
            if self._copied is None:
                self._copied = torch.cuda.Event()
            host = self._slot(u8, pinned=True)
            host.copy_(u8, non_blocking=True)
            self._copied.record()
            self._copied.synchronize()  # the render thread waits, never the window
            return host.numpy()
        ready = torch.cuda.Event()
        slot = self._slot(u8, pinned=False)
        slot.copy_(u8)
        ready.record()
        return DeviceImage(slot, ready)


def _cudart():
    """cuda-python's runtime bindings (module path changed in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise ImportError("CUDA-GL interop needs cuda-python: pip install 'netbend[gpu]' "
                              "(or pip install cuda-python)") from None
    return runtime


def _check(result, what: str):
    err, *rest = result
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


class CudaGLInterop:
    """An OpenGL pixel buffer registered with CUDA, filled from a ``DeviceImage`` on the
    window thread (its GL context current) and then written into a texture."""

    def __init__(self, ctx, device: torch.device):
        self.ctx = ctx
        self.device = device
        self.cudart = _cudart()
        self.pbo = None
        self._resource = None
        self._nbytes = 0
        self._register(3 * 8 * 8)  # fails here, at choice time, if interop cannot work at all

    def _register(self, nbytes: int) -> None:
        self.release()
        rt = self.cudart
        self.pbo = self.ctx.buffer(reserve=nbytes, dynamic=True)
        flags = rt.cudaGraphicsRegisterFlags.cudaGraphicsRegisterFlagsWriteDiscard
        self._resource = _check(rt.cudaGraphicsGLRegisterBuffer(self.pbo.glo, flags), "cudaGraphicsGLRegisterBuffer")
        self._nbytes = nbytes

    def upload(self, image: DeviceImage, texture) -> None:
        """Copy ``image`` into ``texture`` (same width and height) through the pixel buffer."""
        rt = self.cudart
        nbytes = image.tensor.numel()
        if nbytes != self._nbytes:
            self._register(nbytes)
        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(image.ready)
        handle = stream.cuda_stream
        _check(rt.cudaGraphicsMapResources(1, self._resource, handle), "cudaGraphicsMapResources")
        try:
            ptr, size = _check(rt.cudaGraphicsResourceGetMappedPointer(self._resource),
                               "cudaGraphicsResourceGetMappedPointer")
            if size < nbytes:
                raise RuntimeError(f"mapped pixel buffer holds {size} bytes, the frame {nbytes}")
            _check(rt.cudaMemcpyAsync(ptr, image.tensor.data_ptr(), nbytes,
                                      rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, handle), "cudaMemcpyAsync")
        finally:
            # unmapping orders the CUDA work on this stream before any later GL use of the buffer
            _check(rt.cudaGraphicsUnmapResources(1, self._resource, handle), "cudaGraphicsUnmapResources")
        texture.write(self.pbo)

    def release(self) -> None:
        if self._resource is not None:
            try:
                _check(self.cudart.cudaGraphicsUnregisterResource(self._resource), "cudaGraphicsUnregisterResource")
            except Exception:  # noqa: BLE001 - shutting down: release the GL side anyway
                log.exception("while unregistering the pixel buffer")
            self._resource = None
        if self.pbo is not None:
            self.pbo.release()
            self.pbo = None


def host_copy(image: DeviceImage) -> np.ndarray:
    """A DeviceImage as a host array: the fallback when interop fails mid-show."""
    image.ready.synchronize()
    return image.tensor.cpu().numpy()
