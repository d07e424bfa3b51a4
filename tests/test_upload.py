"""How frames reach the texture: the choice between CUDA-GL interop, a pinned-memory copy
and a plain host copy, the render thread's packing, and the window's upload. The CUDA paths
run only where a GPU is (``gpu`` marker); the choice and the host path run everywhere."""
import numpy as np
import pytest
import torch

from engine.images import to_uint8
from live.show.mailbox import Frame
from live.display.upload import UPLOAD_PATHS, FramePacker, choose_upload

CUDA = torch.device("cuda")


def gradient(h=24, w=40, device="cpu"):
    y = torch.linspace(0, 1, h).view(1, 1, h, 1).expand(1, 1, h, w)
    x = torch.linspace(0, 1, w).view(1, 1, 1, w).expand(1, 1, h, w)
    return torch.cat([x, y, 1 - x], dim=1).to(device)  # (1, 3, H, W)


def test_cpu_models_upload_from_host_memory():
    choice, interop = choose_upload(torch.device("cpu"), headless=False, make_interop=lambda: 1 / 0)
    assert (choice.path, interop) == ("host", None)
    assert "runs on cpu" in choice.reason


def test_cuda_headless_uses_the_pinned_copy():
    choice, interop = choose_upload(CUDA, headless=True)
    assert choice.path == "pinned" and interop is None and "headless" in choice.reason


def test_interop_failure_falls_back_to_pinned_and_says_why():
    def no_interop():
        raise ImportError("CUDA-GL interop needs cuda-python")

    choice, interop = choose_upload(CUDA, headless=False, make_interop=no_interop)
    assert choice.path == "pinned" and interop is None
    assert "CUDA-GL interop unavailable: ImportError: CUDA-GL interop needs cuda-python" in choice.reason


def test_working_interop_is_chosen():
    marker = object()
    choice, interop = choose_upload(CUDA, headless=False, make_interop=lambda: marker)
    assert choice.path == "cuda-gl" and interop is marker
    assert str(choice).startswith("cuda-gl (")


def test_host_packing_equals_to_uint8_and_makes_a_valid_frame():
    image = gradient()
    packed = FramePacker("host").pack(image)
    assert isinstance(packed, np.ndarray) and packed.shape == (24, 40, 3) and packed.dtype == np.uint8
    assert np.array_equal(packed, to_uint8(image))
    Frame(packed, 0, 0.0, 0.0)  # what the mailbox accepts


def test_unknown_upload_path_lists_the_allowed():
    with pytest.raises(ValueError, match="unknown upload path 'gl'; allowed: cuda-gl, pinned, host"):
        FramePacker("gl")
    assert UPLOAD_PATHS == ("cuda-gl", "pinned", "host")


# --- GPU: the pinned copy and CUDA-GL interop ------------------------------------------------

def _need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.mark.gpu
def test_pinned_packing_equals_to_uint8_and_reuses_its_ring():
    _need_cuda()
    packer = FramePacker("pinned")
    frames = [gradient(device="cuda") * (k + 1) / 8 for k in range(6)]
    packed = [packer.pack(f).copy() for f in frames]
    for f, p in zip(frames, packed):
        assert np.array_equal(p, to_uint8(f))
    assert all(buf.is_pinned() for buf in packer._ring)


@pytest.mark.gpu
def test_cuda_gl_interop_puts_the_device_frame_in_the_texture():
    _need_cuda()
    pytest.importorskip("cuda.bindings", reason="CUDA-GL interop needs cuda-python")
    import moderngl

    from live.display.display import Display
    from live.display.upload import CudaGLInterop, DeviceImage

    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        display = Display.offscreen(ctx, (40, 24), crossfade=False, interop=CudaGLInterop(ctx, CUDA))
        image = gradient(device="cuda")
        packed = FramePacker("cuda-gl").pack(image)
        assert isinstance(packed, DeviceImage)
        display.upload(Frame(packed, 0, 0.0, 0.0))
        display.draw(1.0)
        assert display.interop is not None, "interop fell back to the host copy"
        shown = display.read_pixels().astype(int)
        assert np.abs(shown - to_uint8(image).astype(int)).max() <= 1
        display.release()
    finally:
        ctx.release()
