"""Mappings: validation, curves, smoothing, auto range, and the paper's rms -> angle."""

import math

import numpy as np
import pytest

from engine.features import FEATURE_NAMES, analyze
from engine.mappings import CURVE_K, CURVES, Mapping, MappingState, map_value


def run(state, values, dt):
    return np.array([state.update(v, dt) for v in values])


# --- the paper's example --------------------------------------------------------------

def test_paper_rms_to_rotation_angle():
    m = Mapping("rms", in_range=(0, 0.5), out_range=(0, 2 * math.pi))
    assert map_value(m, 0.0) == 0.0
    assert map_value(m, 0.25) == pytest.approx(math.pi)
    assert map_value(m, 0.5) == pytest.approx(2 * math.pi)
    assert map_value(m, 0.9) == pytest.approx(2 * math.pi)       # clipped, never beyond
    state = MappingState(m)
    assert state.update(0.125, 0.05) == pytest.approx(math.pi / 2)  # no smoothing: exact


def test_mapping_follows_real_features():
    t = np.arange(44100) / 44100
    x = np.sin(2 * np.pi * 440 * t) * np.linspace(0, 0.6, len(t))   # a swell
    table = analyze(x, 44100)
    state = MappingState(Mapping("rms", in_range=(0, 0.5), out_range=(0, 2 * math.pi), release_ms=100))
    angles = np.array([state.update(frame["rms"], 1 / 20) for frame in table])
    assert np.all(np.isfinite(angles)) and np.all(np.diff(angles) >= 0)
    assert angles[0] < 0.2 and angles[-1] > 0.7 * 2 * math.pi


# --- curves, invert, ranges -------------------------------------------------------------

@pytest.mark.parametrize("curve", CURVES)
def test_curve_endpoints_and_monotonic(curve):
    m = Mapping("rms", in_range=(0.0, 1.0), out_range=(10.0, 20.0), curve=curve)
    assert map_value(m, 0.0) == pytest.approx(10.0)
    assert map_value(m, 1.0) == pytest.approx(20.0)
    ys = [map_value(m, u) for u in np.linspace(0, 1, 101)]
    assert np.all(np.diff(ys) > 0)


def test_curve_shapes():
    mid = {c: map_value(Mapping("rms", in_range=(0, 1), curve=c), 0.5) for c in CURVES}
    assert mid["exp"] < mid["linear"] == 0.5 < mid["log"]
    assert mid["exp"] == pytest.approx(math.expm1(CURVE_K / 2) / math.expm1(CURVE_K))
    assert mid["log"] == pytest.approx(math.log1p(CURVE_K / 2) / math.log1p(CURVE_K))


def test_invert():
    m = Mapping("mid", in_range=(0, 2), out_range=(0, 1), invert=True)
    assert map_value(m, 0) == 1.0 and map_value(m, 2) == 0.0 and map_value(m, 0.5) == 0.75


def test_reversed_out_range():
    m = Mapping("centroid", in_range=(500, 5000), out_range=(1.0, -1.0))
    assert map_value(m, 500) == 1.0 and map_value(m, 5000) == -1.0 and map_value(m, 2750) == 0.0
    assert MappingState(m).update(5000, 0.01) == -1.0


def test_reversed_in_range_reads_downward():
    m = Mapping("kurtosis", in_range=(10, 0))
    assert map_value(m, 10) == 0.0 and map_value(m, 0) == 1.0


def test_auto_in_stateless_path_reads_unit_range():
    m = Mapping("onset")
    assert map_value(m, 0.0) == 0.0 and map_value(m, 1.0) == 1.0 and map_value(m, 7.0) == 1.0


# --- smoothing ----------------------------------------------------------------------------

def test_attack_reaches_63_percent_after_one_time_constant():
    state = MappingState(Mapping("rms", in_range=(0, 1), attack_ms=100, release_ms=1000))
    state.update(0.0, 0.001)
    ys = run(state, [1.0] * 100, 0.001)                     # 100 ms of a step
    assert ys[-1] == pytest.approx(1 - math.exp(-1), rel=1e-9)
    assert np.all(np.diff(ys) > 0)


def test_release_is_separate_from_attack():
    state = MappingState(Mapping("rms", in_range=(0, 1), attack_ms=0, release_ms=50))
    assert state.update(1.0, 0.01) == 1.0
    assert state.update(1.0, 0.01) == 1.0                    # attack 0: instant
    ys = run(state, [0.0] * 5, 0.01)                         # 50 ms down
    assert ys[-1] == pytest.approx(math.exp(-1), rel=1e-9)
    assert state.update(1.0, 0.01) == 1.0                    # rising again is instant


def test_smoothing_happens_before_scaling():
    state = MappingState(Mapping("rms", in_range=(0, 1), out_range=(100, 0), attack_ms=10))
    state.update(0.0, 0.01)
    assert state.update(1.0, 0.01) == pytest.approx(100 * math.exp(-1))


def test_no_time_no_change():
    state = MappingState(Mapping("rms", in_range=(0, 1), attack_ms=10, release_ms=10))
    state.update(0.2, 0.01)
    assert state.update(0.9, 0.0) == pytest.approx(0.2)
    assert state.update(0.9, -1.0) == pytest.approx(0.2)     # a clock step back is no time
    assert state.update(0.9, math.nan) == pytest.approx(0.2)


# --- auto range -------------------------------------------------------------------------------

def test_auto_range_adapts_from_quiet_to_loud():
    dt = 0.01
    t = np.arange(0, 10, dt)
    wobble = 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)             # 0..1, 2 s period
    state = MappingState(Mapping("rms", out_range=(0, 1)))        # in_range="auto"
    quiet = run(state, 0.01 + 0.01 * wobble, dt)                  # rms 0.01..0.02
    loud = run(state, 0.4 + 0.4 * wobble, dt)                     # rms 0.4..0.8, 40x louder
    for ys in (quiet, loud):
        last = ys[-200:]                                          # one full period
        assert last.min() < 0.05 and last.max() > 0.95           # full swing at either gain
    assert loud[0] > 0.95                                         # the jump up is "loud" at once
    assert np.all((quiet >= 0) & (quiet <= 1) & (loud >= 0) & (loud <= 1))


def test_auto_range_relaxes_after_a_peak():
    state = MappingState(Mapping("rms"))
    run(state, [0.1, 0.2] * 50, 0.01)
    assert state.update(10.0, 0.01) == 1.0                        # one huge spike
    ys = run(state, [0.1, 0.2] * 1500, 0.01)                      # 30 s later
    assert ys[-2:].min() < 0.05 and ys[-2:].max() > 0.95          # the spike is forgotten


def test_auto_range_on_steady_and_silent_input_is_finite():
    steady = run(MappingState(Mapping("rms")), [0.3] * 1000, 0.01)
    assert np.all(np.isfinite(steady)) and steady[-1] == 1.0      # steady reads as its top
    silent = run(MappingState(Mapping("rms")), [0.0] * 1000, 0.01)
    assert np.all(silent == 0.0)


# --- non-finite input -----------------------------------------------------------------

def test_nan_keeps_the_last_value():
    state = MappingState(Mapping("rms", in_range=(0, 1), out_range=(2, 4)))
    assert state.update(math.nan, 0.01) == 2.0                    # nothing yet: out lo
    assert state.update(0.5, 0.01) == 3.0
    for bad in (math.nan, math.inf, -math.inf):
        assert state.update(bad, 0.01) == 3.0
    assert state.update(1.0, 0.01) == 4.0
    auto = MappingState(Mapping("rms"))
    run(auto, [0.1, 0.3, math.nan, 0.2], 0.01)
    assert math.isfinite(auto.update(0.25, 0.01))
    assert map_value(Mapping("rms", in_range=(0, 1), out_range=(2, 4)), math.nan) == 2.0


# --- data: validation and round trip ---------------------------------------------------------

def test_round_trip_through_dict():
    mappings = [
        Mapping("rms", in_range=(0, 0.5), out_range=(0, 2 * math.pi)),
        Mapping("bass_ratio", out_range=(1.0, -1.0), curve="exp", attack_ms=5, release_ms=250, invert=True),
        Mapping("centroid", in_range=[200, 8000], curve="log"),
    ]
    for m in mappings:
        d = m.to_dict()
        assert set(d) == {"feature", "in_range", "out_range", "curve", "attack_ms", "release_ms", "invert"}
        assert isinstance(d["out_range"], list)                   # TOML-friendly
        assert Mapping.from_dict(d) == m
    assert mappings[2].in_range == (200.0, 8000.0)                # lists become tuples
    assert Mapping.from_dict({"feature": "onset"}) == Mapping("onset")


def test_bad_dicts_name_the_problem():
    with pytest.raises(ValueError, match=r"'gain'.*allowed: feature, in_range, out_range, curve"):
        Mapping.from_dict({"feature": "rms", "gain": 2})
    with pytest.raises(ValueError, match="needs a 'feature'"):
        Mapping.from_dict({"curve": "exp"})
    with pytest.raises(ValueError, match="table"):
        Mapping.from_dict(["rms"])


@pytest.mark.parametrize("kwargs, message", [
    ({"feature": "loudness"}, "allowed: " + ", ".join(FEATURE_NAMES)),
    ({"feature": "rms", "curve": "cubic"}, "allowed: linear, exp, log"),
    ({"feature": "rms", "in_range": (1, 1)}, "lo != hi"),
    ({"feature": "rms", "in_range": (0, math.inf)}, "finite"),
    ({"feature": "rms", "in_range": (0, 1, 2)}, "pair"),
    ({"feature": "rms", "in_range": "automatic"}, "auto"),
    ({"feature": "rms", "out_range": (0, math.nan)}, "finite"),
    ({"feature": "rms", "out_range": "wide"}, "pair"),
    ({"feature": "rms", "attack_ms": -1}, "attack_ms"),
    ({"feature": "rms", "release_ms": math.inf}, "release_ms"),
    ({"feature": "rms", "invert": "yes"}, "invert"),
])
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Mapping(**kwargs)


def test_mapping_is_frozen():
    m = Mapping("rms")
    with pytest.raises(AttributeError):
        m.curve = "exp"
