"""Every operator passes the same checklist (STYLE.md 9), plus the paper's own definitions."""
import math

import pytest
import torch

from engine.bends import Bend, BendModule, apply_bend
from engine.operators import OPERATORS, get_operator, rotation_matrix

NAMES = sorted(OPERATORS)
TYPICAL_R = {"reflect": 2.0, "erode": 3.0, "dilate": 3.0, "gradient": 3.0, "scale": 1.5, "power": 2.0,
             "threshold": 0.1, "binary": 0.5, "clamp": 0.5, "invert": 2.0}
EXTREME_R = [0.0, -0.0, 1e-12, -1e-12, 0.5, -3.0, 1e6, -1e6, 1e30, -1e30]


def sample(shape=(2, 4, 16, 16), dtype=torch.float32, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def r_for(name):
    return TYPICAL_R.get(name, 0.7)


def test_registry_has_every_operator_in_the_design():
    paper = {"add", "multiply", "threshold", "threshold_abs", "invert", "rotate", "reflect", "erode", "dilate"}
    broad = {"translate", "scale", "rotate_spatial", "flip_h", "flip_v", "ablate", "binary"}
    extras = {"noise", "soft_threshold", "power", "clamp", "sobel", "gradient", "abs", "mix", "rotate6"}
    assert paper | broad | extras == set(OPERATORS)


def test_unknown_operator_lists_valid_names():
    with pytest.raises(ValueError, match="valid operators: .*rotate"):
        get_operator("rotat")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 4, 16, 16), (4, 8, 12), (1, 7, 9, 11)])
def test_keeps_shape_dtype_device_and_input(name, dtype, shape):
    x = sample(shape, dtype)
    before = x.clone()
    y = OPERATORS[name](x, r_for(name))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.equal(x, before), "operators must not modify their input"


@pytest.mark.parametrize("name", [n for n in NAMES if OPERATORS[n].neutral is not None])
def test_neutral_param_is_identity(name):
    x = sample()
    y = OPERATORS[name](x, OPERATORS[name].neutral)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_changes_something_at_a_typical_param(name):
    x = sample()
    assert not torch.allclose(OPERATORS[name](x, r_for(name)), x)


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_input_equals_contiguous(name):
    base = sample((2, 4, 16, 16))
    x = base.transpose(-1, -2)  # a view with swapped strides
    assert not x.is_contiguous()
    torch.testing.assert_close(OPERATORS[name](x, r_for(name)), OPERATORS[name](x.contiguous(), r_for(name)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r", EXTREME_R)
def test_finite_output_for_extreme_params(name, r):
    x = sample() * 10
    x[0, 0, 0, 0] = 0.0  # exact zeros are where 1/x, x/|x| and 0^r go wrong
    assert torch.isfinite(OPERATORS[name](x, r)).all()


@pytest.mark.parametrize("name", NAMES)
def test_module_twin_equals_function(name):
    bend = Bend(name, param=r_for(name))
    x = sample()
    torch.testing.assert_close(BendModule(bend)(x), OPERATORS[name](x, r_for(name)))


@pytest.mark.parametrize("name", ["add", "rotate", "erode", "scale", "mix", "binary", "noise", "translate"])
def test_compiled_equals_eager(name):
    x = sample()
    eager = OPERATORS[name](x, r_for(name))
    compiled = torch.compile(lambda t: OPERATORS[name](t, r_for(name)), backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager)


# -- the paper's definitions ---------------------------------------------------------------

def paper_matrices(r):
    """The four 4x4 rotations exactly as printed in the authors' code (rotate_x, rotate_y,
    rotate_y2, rotate_z), named R1..R4 in the paper."""
    c, s = math.cos(r), math.sin(r)
    return {
        "R1": [[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]],
        "R2": [[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]],
        "R3": [[c, 0, 0, s], [0, 1, 0, 0], [0, 0, 1, 0], [-s, 0, 0, c]],
        "R4": [[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    }


@pytest.mark.parametrize("plane", ["R1", "R2", "R3", "R4"])
@pytest.mark.parametrize("r", [0.3, math.pi / 2, 2.5, -1.0])
def test_rotations_equal_the_papers_matrices(plane, r):
    m = torch.tensor(paper_matrices(r)[plane], dtype=torch.float64)
    torch.testing.assert_close(rotation_matrix(r, plane), m)
    x = sample((4, 8, 8), torch.float64)
    expected = torch.tensordot(m, x, dims=1)  # how the authors apply it to a (4, 64, 64) latent
    torch.testing.assert_close(OPERATORS["rotate"](x, r, plane=plane), expected)


def test_rotate_generalises_to_any_channel_count():
    x = sample((2, 320, 8, 8))
    y = OPERATORS["rotate"](x, math.pi, plane=(5, 300))
    torch.testing.assert_close(y[:, 5], -x[:, 5])
    torch.testing.assert_close(y[:, 300], -x[:, 300])
    torch.testing.assert_close(y[:, 6:300], x[:, 6:300])


def test_rotate6_is_the_product_of_six_plane_rotations():
    r = 0.4
    x = sample((4, 6, 6), torch.float64)
    expected = x
    for i in range(4):
        for j in range(i + 1, 4):
            expected = OPERATORS["rotate"](expected, r, plane=(i, j))
    torch.testing.assert_close(OPERATORS["rotate6"](x, r), expected)


def test_threshold_is_paper_eq3_and_threshold_abs_the_published_code():
    x = torch.tensor([[[-2.0, -0.5], [0.5, 2.0]]])
    assert OPERATORS["threshold"](x, 0.5).tolist() == [[[0.0, 0.0], [1.0, 1.0]]]
    assert OPERATORS["threshold_abs"](x, 1.0).tolist() == [[[-2.0, 0.0], [0.0, 2.0]]]


def test_invert_reflect_and_soft_threshold_values():
    x = torch.tensor([[[-1.0, 0.0], [2.0, 3.0]]])
    torch.testing.assert_close(OPERATORS["invert"](x, 0.5), 2.0 - x)
    assert torch.isfinite(OPERATORS["invert"](x, 0.0)).all()
    y = OPERATORS["soft_threshold"](x, 1.0)
    assert y.tolist() == [[[-0.0, 0.0], [1.0, 2.0]]]
    x4 = sample((4, 5, 5))
    y4 = OPERATORS["reflect"](x4, 2.0)
    torch.testing.assert_close(y4[2], -x4[2])
    torch.testing.assert_close(y4[[0, 1, 3]], x4[[0, 1, 3]])
    torch.testing.assert_close(OPERATORS["reflect"](x4, 6.0), y4)  # wraps modulo C


def test_erode_and_dilate_are_kornia_min_max_filters():
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 3] = 1.0
    assert OPERATORS["dilate"](x, 3)[0, 0, 2:5, 2:5].eq(1).all()
    assert OPERATORS["dilate"](x, 3).sum() == 9
    assert OPERATORS["erode"](OPERATORS["dilate"](x, 3), 3).sum() == 1


def test_noise_is_fixed_across_frames_and_seeded():
    x = sample()
    a, b = OPERATORS["noise"](x, 1.0), OPERATORS["noise"](x, 1.0)
    assert torch.equal(a, b)
    assert not torch.equal(a, OPERATORS["noise"](x, 1.0, seed=1))


def test_translate_wraps_whole_cells():
    x = sample((1, 2, 4, 8))
    torch.testing.assert_close(OPERATORS["translate"](x, 0.25), torch.roll(x, 2, dims=-1))
    torch.testing.assert_close(OPERATORS["translate"](x, 1.25), torch.roll(x, 2, dims=-1))


def test_apply_bend_targets_and_normalises():
    x = sample((1, 4, 8, 8))
    y = apply_bend(x, Bend("add", param=1.0, target="channels 1"))
    torch.testing.assert_close(y[:, 1], x[:, 1] + 1)
    torch.testing.assert_close(y[:, [0, 2, 3]], x[:, [0, 2, 3]])
    z = apply_bend(x, Bend("add", param=1.0, normalize=0))
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(1, 8, 8), atol=1e-6, rtol=0)
