"""Every operator declares its useful range in the one registry (engine/operators.py), and
its ``limit`` is honest: at +-limit a frame of the tiny model stays finite at the latent and
at U-Net points from the first to the last block."""
from __future__ import annotations

import math

import pytest
import torch

from engine.bends import Bend
from engine.operators import OPERATORS, declared_ranges, param_range


def test_every_registered_operator_declares_a_range():
    missing = sorted(set(OPERATORS) - declared_ranges())
    assert not missing, f"operators without a declared range in engine/operators.py _RANGES: {missing}"


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_a_range_is_ordered_within_its_limit_and_amount_inverts_it(name):
    r = param_range(name)
    assert r.low < r.high and r.unit
    assert 0 < r.limit and max(abs(r.low), abs(r.high)) <= r.limit
    assert r.neutral == OPERATORS[name].neutral
    assert r.param(0.0) == r.low and r.param(1.0) == r.high
    assert r.param(-5) == r.low and r.param(7) == r.high  # clipped
    assert math.isclose(r.amount(r.param(0.3)), 0.3)


def test_an_unknown_operator_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid operators"):
        param_range("rotat")


@pytest.fixture(scope="module")
def pipe(tiny):
    from engine.stream import StreamConfig, StreamPipeline

    p = StreamPipeline(tiny, StreamConfig(prompt="fog"))
    p.prepare()
    good = p.step().clone()
    yield p, good
    p.bends = []


def test_frames_stay_finite_at_plus_and_minus_every_limit(pipe):
    p, good = pipe
    names = p.bender.names
    layers = ["latent", names[0], names[len(names) // 3], "mid", names[-2], names[-1]]
    bad = []
    for name in sorted(OPERATORS):
        limit = param_range(name).limit
        for r in (limit, -limit):
            for layer in layers:
                p.bends = [Bend(name, layer, r)]
                p.resume(good, 0)
                if not bool(torch.isfinite(p.step()).all()):
                    bad.append(f"{name} r={r:g} @ {layer}")
    assert not bad, bad


def test_the_power_limit_is_needed(pipe):
    """The reason power's limit is 4: past it some layer's frame overflows (so the bound is
    a real one, not decoration)."""
    p, good = pipe
    failed = False
    for layer in p.bender.names[:6]:
        p.bends = [Bend("power", layer, -8.0)]
        p.resume(good, 0)
        failed |= not bool(torch.isfinite(p.step()).all())
    assert failed


def test_the_readme_operator_table_is_the_registry():
    """README's table of operator ranges was written by hand from the registry: every
    operator is a row, and each row says what param_range declares."""
    import re
    from pathlib import Path

    from engine.operators import OPERATORS, param_range

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {m[0]: m[1:] for m in re.findall(r"^\| `([^`]+)` \| (\S+) \| (\S+) \.\. (\S+) \| (.+?) \| ±(\S+) \|$", readme, re.M)}
    assert set(rows) == set(OPERATORS), set(rows) ^ set(OPERATORS)

    def number(text):
        return float(text)  # the table rounds 2π to 6.283

    for name, (neutral, low, high, unit, limit) in rows.items():
        r = param_range(name)
        assert (neutral == "–") == (r.neutral is None), name
        if r.neutral is not None:
            assert number(neutral) == pytest.approx(r.neutral, abs=1e-3), name
        assert (number(low), number(high), number(limit)) == pytest.approx((r.low, r.high, r.limit), abs=1e-3), name
        assert unit == r.unit, name
