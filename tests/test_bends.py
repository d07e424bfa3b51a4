"""Bends and targets as data: parsing, validation with useful messages, round trips."""
import math

import pytest
import torch

from engine.bends import Bend, apply_bends, parse_steps
from engine.targets import ALL, Target, parse_target, target_mask


def test_bend_defaults_and_readable_text():
    b = Bend("rotate", "latent", math.pi / 2, "channels 0 2", step=40, normalize=0, opts={"plane": "R1"})
    assert b.target == Target("channels", channels=(0, 2))
    assert b.step == frozenset({40})
    assert str(b) == "rotate(plane=R1) r=1.571 @ latent step 40 on channels 0 2, normalize dim 0"


@pytest.mark.parametrize("kwargs, message", [
    (dict(operator="rotat"), "valid operators: .*rotate"),
    (dict(operator="add", layer=-1), "layer index must be >= 0"),
    (dict(operator="add", layer=""), "layer is empty"),
    (dict(operator="add", param=float("nan")), "param must be finite"),
    (dict(operator="add", param="loud"), "param must be a number"),
    (dict(operator="add", normalize=3), "normalize must be None, 0, 1 or 2"),
    (dict(operator="add", step=-2), "steps are integers >= 0"),
    (dict(operator="add", step="soon"), "allowed: 'all'"),
    (dict(operator="add", target="channel 1"), "unknown target kind 'channel'"),
    (dict(operator="rotate", opts={"plane": "R9"}), "unknown rotation plane 'R9'"),
    (dict(operator="rotate", opts={"angle": 1}), r"no option\(s\) \['angle'\]; its options: \['plane'\]"),
    (dict(operator="flip_h", opts={"x": 1}), "its options: none"),
])
def test_bad_bends_say_what_is_wrong_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Bend(**kwargs)


@pytest.mark.parametrize("spec, expected", [
    (None, None), ("all", None), (3, {3}), ("1,2,5", {1, 2, 5}), ("0:3", {0, 1, 2}), ([4, 6], {4, 6}),
])
def test_parse_steps(spec, expected):
    assert parse_steps(spec) == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize("text", ["all", "channels 0 2", "random 0.25 seed=7", "random_channels 0.5 seed=0",
                                  "rows 2:5", "cols 0.25:0.75", "box 1:3 0.5:1.0"])
def test_target_text_round_trips(text):
    t = parse_target(text)
    assert parse_target(str(t)) == t


@pytest.mark.parametrize("text, message", [
    ("rows 5", "bad span"), ("rows 5:2", "start < end"), ("random 2", "fraction must be in 0..1"),
    ("channels", "one or more channel"), ("box 1:2", "wrong number of arguments"), ("all 3", "takes no arguments"),
])
def test_bad_targets(text, message):
    with pytest.raises(ValueError, match=message):
        parse_target(text)


def test_bend_dict_round_trip_and_unknown_keys():
    b = Bend("rotate", "up.1", 0.5, "random 0.3 seed=2", step="1,3", normalize=1, opts={"plane": [0, 3]})
    assert Bend.from_dict(b.to_dict()) == b
    with pytest.raises(ValueError, match=r"unknown bend key\(s\) \['colour'\]"):
        Bend.from_dict({"operator": "add", "colour": 1})


def test_masks_select_what_they_say():
    shape = (4, 8, 8)
    assert target_mask(ALL, shape, torch.device("cpu")) is None
    rows = target_mask(parse_target("rows 2:4"), shape, torch.device("cpu"))
    assert rows.expand(shape).sum() == 4 * 2 * 8
    frac = target_mask(parse_target("cols 0.0:0.5"), shape, torch.device("cpu"))
    assert frac.expand(shape)[..., :4].all() and not frac.expand(shape)[..., 4:].any()
    box = target_mask(parse_target("box 0:2 0:3"), shape, torch.device("cpu"))
    assert box.expand(shape).sum() == 4 * 2 * 3


def test_random_targets_are_seeded_and_fixed_across_frames():
    t = parse_target("random 0.3 seed=5")
    m1 = target_mask(t, (4, 32, 32), torch.device("cpu"))
    target_mask.cache_clear()
    m2 = target_mask(t, (4, 32, 32), torch.device("cpu"))
    assert torch.equal(m1, m2)
    assert 0.2 < m1.float().mean() < 0.4
    m3 = target_mask(parse_target("random 0.3 seed=6"), (4, 32, 32), torch.device("cpu"))
    assert not torch.equal(m1, m3)
    ch = target_mask(parse_target("random_channels 0.5 seed=1"), (64, 4, 4), torch.device("cpu"))
    assert ch.shape == (64, 1, 1)


def test_channel_target_out_of_range_names_the_channel_count():
    with pytest.raises(ValueError, match="this layer has 4 channels"):
        target_mask(parse_target("channels 7"), (4, 8, 8), torch.device("cpu"))


def test_bends_chain_in_order_and_respect_steps_and_enable():
    x = torch.ones(1, 4, 2, 2)
    bends = [Bend("add", param=1.0, step=0), Bend("multiply", param=3.0), Bend("add", param=100, enabled=False)]
    assert apply_bends(x, bends, "latent", 0).eq(6).all()  # (1 + 1) * 3, not 1 * 3 + 1
    assert apply_bends(x, bends, "latent", 1).eq(3).all()
    assert apply_bends(x, bends, "mid", 0).eq(1).all()


# -- the two layer spellings (issue 11) ------------------------------------------------------

from engine.bends import bare_integer_message, format_layer, parse_layer  # noqa: E402


@pytest.mark.parametrize("text, expected", [
    ("latent@40", ("latent", 40)), ("latent", ("latent", None)), ("unet:40", (40, None)),
    ("unet:mid", ("mid", None)), ("up.2.attentions.0", ("up.2.attentions.0", None)), (" latent@0 ", ("latent", 0)),
])
def test_parse_layer_spellings(text, expected):
    assert parse_layer(text) == expected
    assert parse_layer(text, bare_int="refuse") == expected


@pytest.mark.parametrize("bare", [40, "40", 0])
def test_a_bare_integer_is_refused_where_the_readme_says_with_both_spellings(bare):
    with pytest.raises(ValueError) as e:
        parse_layer(bare, bare_int="refuse")
    n = int(bare)
    assert f'"latent@{n}"' in str(e.value) and f'"unet:{n}"' in str(e.value)
    with pytest.raises(ValueError, match="ambiguous"):
        Bend.from_dict({"operator": "add", "layer": bare}, bare_int="refuse")
    # Python and OSC keep an int as a U-Net index
    assert parse_layer(bare) == (n, None)
    assert Bend.from_dict({"operator": "add", "layer": bare}).layer == n


@pytest.mark.parametrize("text, message", [
    ("latent@", "latent@N"), ("latent@x", "latent@N"), ("unet:", "unet:N"), ("unet:latent", "unet:N"),
    ("mid@3", "only the latent"), (2.5, "bad layer"),
])
def test_bad_layer_spellings_say_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message):
        parse_layer(text)


def test_bend_with_latent_at_n_sets_the_step_and_round_trips():
    b = Bend("R1", "latent@40", 1.0)
    assert (b.layer, b.step) == ("latent", frozenset({40}))
    assert Bend("R1", "latent@40", 1.0, step=40) == b
    with pytest.raises(ValueError, match="says step 40 but step is 10"):
        Bend("R1", "latent@40", step=10)
    u = Bend("add", "unet:12", 0.5)
    assert u.layer == 12 and u.to_dict()["layer"] == "unet:12"
    assert Bend.from_dict(u.to_dict(), bare_int="refuse") == u  # a saved preset reads back
    assert "@ unet:12" in str(u) and format_layer("mid") == "mid"
    assert "latent@7" in bare_integer_message(7)


@pytest.mark.parametrize("mode, operator", [("max", "normalize_max"), ("l2", "normalize_l2"), ("mean", "normalize_mean")])
def test_bend_normalize_takes_the_authors_other_normalisations(mode, operator):
    from engine.bends import apply_bend
    from engine.operators import OPERATORS

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    b = Bend("add", param=0.5, normalize=mode)
    torch.testing.assert_close(apply_bend(x, b), OPERATORS[operator](x + 0.5, 1.0))
    assert f"normalize {mode}" in str(b) and Bend.from_dict(b.to_dict()) == b
    with pytest.raises(ValueError, match="max, l2, mean"):
        Bend("add", normalize="std")


@pytest.mark.parametrize("kind, dim", [("random_rows", 1), ("random_cols", 2)])
def test_random_rows_and_cols_pick_int_fraction_lines_fixed_by_seed(kind, dim):
    t = parse_target(f"{kind} 0.25 seed=3")
    assert str(t) == f"{kind} 0.25 seed=3" and parse_target(str(t)) == t
    mask = target_mask(t, (4, 16, 20), torch.device("cpu"))
    full = mask.expand(4, 16, 20)
    n = (16, 20)[dim - 1]
    lines = full[0, :, 0] if dim == 1 else full[0, 0, :]
    assert int(lines.sum()) == int(0.25 * n)
    assert bool((full == lines.view(1, -1, 1) if dim == 1 else full == lines.view(1, 1, -1)).all())
    assert torch.equal(mask, target_mask(parse_target(f"{kind} 0.25 seed=3"), (4, 16, 20), torch.device("cpu")))
    assert not torch.equal(mask, target_mask(parse_target(f"{kind} 0.25 seed=4"), (4, 16, 20), torch.device("cpu")))
    with pytest.raises(ValueError, match="fraction must be in 0..1"):
        parse_target(f"{kind} 1.5")
