"""Every operator passes the same checklist (STYLE.md 9), plus the paper's own definitions."""
import math

import pytest
import torch

from engine.bends import Bend, BendModule, apply_bend
from engine.operators import OPERATORS, get_operator
from engine.value_operators import rotation_matrix

NAMES = sorted(OPERATORS)
TYPICAL_R = {"reflect": 2.0, "erode": 3.0, "dilate": 4.0, "gradient": 4.0, "soft_threshold2": 0.5, "scale": 1.5, "power": 2.0,
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
    planes = {"R1", "R2", "R3", "R4"}
    published = {"log", "exp", "rescale", "hadamard", "normalize_max", "normalize_l2", "normalize_mean",
                 "soft_threshold2"}
    assert paper | broad | extras | planes | published == set(OPERATORS)


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


@pytest.mark.parametrize("name", ["add", "rotate", "erode", "scale", "mix", "binary", "noise", "translate",
                                  "R1", "dilate", "gradient", "hadamard", "rescale", "exp", "log",
                                  "normalize_max", "normalize_l2", "normalize_mean", "soft_threshold2"])
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


@pytest.mark.parametrize("plane", ["R1", "R2", "R3", "R4"])
def test_named_planes_are_operators_equal_to_the_papers_matrices(plane):
    r = 0.9
    m = torch.tensor(paper_matrices(r)[plane], dtype=torch.float64)
    x = sample((4, 8, 8), torch.float64)
    torch.testing.assert_close(OPERATORS[plane](x, r), torch.tensordot(m, x, dims=1))
    assert Bend(plane, param=r).opts == {}  # no plane option: the name is the plane
    with pytest.raises(ValueError, match="no option"):
        Bend(plane, opts={"plane": "R2"})


def test_rotate6_no_longer_claims_to_be_the_authors():
    assert "authors' R6" not in OPERATORS["rotate6"].__doc__


def test_erode_and_dilate_are_min_max_filters():
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


# -- morphology independent of kornia's version ---------------------------------------------

def kornia06_flat(x, k, largest):
    """kornia 0.6's flat erosion / dilation, written out: pad by [k//2, k - 1 - k//2] on
    each axis with -+max_val (its "geodesic" border), unfold k x k windows, reduce. Its
    dilation flipped only the (all-zero) structuring element, not the window."""
    o, max_val = k // 2, 1e4
    padded = torch.nn.functional.pad(x, (o, k - 1 - o, o, k - 1 - o), value=-max_val if largest else max_val)
    windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # (B, C, H, W, k, k)
    return windows.amax(dim=(-2, -1)) if largest else windows.amin(dim=(-2, -1))


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_morphology_equals_the_authors_kornia_06_on_a_fixed_tensor(k):
    x = sample((1, 4, 9, 10))
    torch.testing.assert_close(OPERATORS["dilate"](x, k), kornia06_flat(x, k, True), rtol=0, atol=0)
    torch.testing.assert_close(OPERATORS["erode"](x, k), kornia06_flat(x, k, False), rtol=0, atol=0)
    torch.testing.assert_close(OPERATORS["gradient"](x, k), kornia06_flat(x, k, True) - kornia06_flat(x, k, False))


def test_even_dilation_of_a_hot_cell_lands_where_kornia_06_put_it():
    # kornia 0.6 (and OpenCV): rows {2, 3} x cols {3, 4}; kornia 0.9 and scipy put it one
    # cell up and left, at rows {1, 2} x cols {2, 3} (kornia issue 4733).
    x = torch.zeros(1, 1, 6, 7)
    x[0, 0, 2, 3] = 1.0
    assert OPERATORS["dilate"](x, 2)[0, 0].nonzero().tolist() == [[2, 3], [2, 4], [3, 3], [3, 4]]
    rows, cols = OPERATORS["dilate"](x, 4)[0, 0].nonzero().unbind(1)
    assert sorted(set(rows.tolist())) == [1, 2, 3, 4] and sorted(set(cols.tolist())) == [2, 3, 4, 5]
    # the authors' fixed 4 x 4 gradient of the same cell
    assert OPERATORS["gradient"](x, 4)[0, 0].sum() == 16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_morphology_in_half_precision(dtype):
    x = sample((1, 4, 8, 8))
    torch.testing.assert_close(OPERATORS["dilate"](x.to(dtype), 4).float(), OPERATORS["dilate"](x, 4).to(dtype).float())


# -- the rest of the authors' operators, against their formulas -----------------------------

def test_log_is_the_authors_log_of_abs():
    x = torch.tensor([[[-4.0, 0.5], [2.0, 8.0]]])
    torch.testing.assert_close(OPERATORS["log"](x, 2.0), torch.log2(x.abs()))
    torch.testing.assert_close(OPERATORS["log"](x, math.e), torch.log(x.abs()))
    assert torch.isfinite(OPERATORS["log"](torch.zeros(1, 2, 2), 1.0)).all()  # log 0, base 1


def test_rescale_is_min_max_onto_lo_hi():
    x = sample((4, 8, 8))
    y = OPERATORS["rescale"](x, 1.0, lo=-0.5, hi=2.0)
    expected = (x - x.min()) / (x.max() - x.min()) * 2.5 - 0.5  # the authors' scale((-0.5, 2))
    torch.testing.assert_close(y, expected)
    assert torch.equal(OPERATORS["rescale"](torch.full((1, 2, 2), 3.0), 1.0), torch.zeros(1, 2, 2))


def test_exp_is_the_matrix_exponential_of_each_map():
    x = sample((2, 4, 6, 6), torch.float64) * 0.3
    torch.testing.assert_close(OPERATORS["exp"](x, 1.0), torch.linalg.matrix_exp(x))
    torch.testing.assert_close(OPERATORS["exp"](x, 0.0), torch.eye(6, dtype=torch.float64).expand(2, 4, 6, 6))


def test_hadamard_is_the_authors_hadamard1_and_hadamard2():
    h4 = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    x = sample((4, 8, 8), torch.float64)
    torch.testing.assert_close(OPERATORS["hadamard"](x, 1.0), torch.tensordot(h4, x, dims=1))
    # hadamard2 on rows: tensordot(x, H, dims=[[1], [1]]) is (H x_c)^T for each channel
    h8 = engine_sylvester(8)
    authors = torch.tensordot(x, h8, dims=[[1], [1]])
    torch.testing.assert_close(OPERATORS["hadamard"](x, 1.0, axis="rows"), authors.transpose(-1, -2))
    y = OPERATORS["hadamard"](x, 1.0, normalized=True)
    torch.testing.assert_close(y.norm(), x.norm())  # orthonormal when normalised
    with pytest.raises(ValueError, match="axis"):
        OPERATORS["hadamard"](x, 1.0, axis="depth")


def engine_sylvester(n):
    from engine.published_operators import _sylvester

    h = _sylvester(n)
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))
    return h


def test_normalize_variants_are_the_authors():
    x = sample((4, 8, 8))
    torch.testing.assert_close(OPERATORS["normalize_max"](x, 1.0), x / x.abs().max())
    torch.testing.assert_close(OPERATORS["normalize_l2"](x, 1.0), torch.nn.functional.normalize(x, dim=0))
    torch.testing.assert_close(OPERATORS["normalize_mean"](x, 1.0), x - x.mean())
    assert torch.equal(OPERATORS["normalize_max"](torch.zeros(1, 2, 3, 3), 1.0), torch.zeros(1, 2, 3, 3))
    b = sample((2, 4, 8, 8))  # a guidance batch: each half on its own
    torch.testing.assert_close(OPERATORS["normalize_max"](b, 1.0)[1], OPERATORS["normalize_max"](b[1], 1.0))


def test_clamp_with_lo_hi_is_the_authors_clamp_pair():
    x = sample((4, 8, 8))
    torch.testing.assert_close(OPERATORS["clamp"](x, 0.0, lo=-1.0, hi=-0.5), x.clamp(-1.0, -0.5))
    torch.testing.assert_close(OPERATORS["clamp"](x, 0.0, lo=0.5, hi=-0.5), x.clamp(-0.5, 0.5))  # swapped
    torch.testing.assert_close(OPERATORS["clamp"](x, 0.3, hi=1.0), x.clamp(-0.3, 1.0))


def test_soft_threshold2_is_the_authors():
    x = torch.tensor([[[-2.0, -0.2], [0.3, 1.0]]])
    torch.testing.assert_close(OPERATORS["soft_threshold2"](x, 0.5), torch.tensor([[[-1.0, 0.0], [0.0, 0.5]]]))


def test_noise_driven_by_rms_is_the_authors_add_gaussian_rms():
    # add_gaussian_rms(x, audio) = x + N(0, 1) * rms(audio): netbend's noise with r = rms
    # (a mapping rms, in_range [0, 1] -> out_range [0, 1]), on a fixed noise pattern.
    from engine.mappings import Mapping, MappingState

    x = sample((1, 4, 8, 8))
    state = MappingState(Mapping("rms", in_range=(0.0, 1.0), out_range=(0.0, 1.0)))
    r = state.update(0.2, 0.05)
    unit = OPERATORS["noise"](torch.zeros_like(x), 1.0)
    torch.testing.assert_close(OPERATORS["noise"](x, r), x + 0.2 * unit)
