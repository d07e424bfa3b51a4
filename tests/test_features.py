"""Audio features: known signals with hand-computed answers, librosa as an independent
reference, live (per-window) equal to offline (whole-file), and robustness."""

import math

import librosa
import numpy as np
import pytest

from engine.feature_history import TEMPO_MIN_HISTORY_S
from engine.features import FEATURE_NAMES, FeatureExtractor, FeatureFrame, FeatureTable, analyze, window_size
from engine.spectrum import fft_size

SR = 44100
L = 2205          # 50 ms at 44.1 kHz
N = 4096          # next power of two
BIN = SR / N      # 10.8 Hz


def tone(freq, seconds, amp=1.0, sr=SR, phase=0.3):
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t + phase)


def one_window(x, sr=SR, **kw):
    return FeatureExtractor(sr, **kw).process(x, 0.0)


def click_track(bpm, seconds, first=0.13, sr=SR):
    """Short 3 kHz blips (5 ms, decaying) on a beat grid; returns (samples, click times)."""
    x = np.zeros(int(seconds * sr))
    times = np.arange(first, seconds - 0.01, 60.0 / bpm)
    n = np.arange(int(0.005 * sr))
    blip = 0.5 * np.exp(-n / 40.0) * np.sin(2 * np.pi * 3000 * n / sr)
    for t in times:
        i = int(t * sr)
        x[i: i + len(n)] += blip[: len(x) - i]
    return x, times


def mixed_signal(seconds=3.0, seed=0):
    """Tones, noise bursts and silence: exercises every branch of the stateful features."""
    rng = np.random.default_rng(seed)
    x = tone(220, 3.0, 0.3) + tone(1234, 3.0, 0.1)
    ms = SR // 1000
    x[500 * ms: 900 * ms] += 0.3 * rng.standard_normal(400 * ms)
    x[1400 * ms: 1900 * ms] = 0.0
    x[2200 * ms: 2300 * ms] = 0.5 * rng.standard_normal(100 * ms)
    return x[: int(round(seconds * SR))]


# --- sizes -------------------------------------------------------------------------

def test_window_and_fft_sizes():
    assert window_size(44100) == 2205 and window_size(48000) == 2400 and window_size(22050, 0.1) == 2205
    assert fft_size(2205) == 4096 and fft_size(2048) == 2048 and fft_size(1) == 1
    assert FeatureExtractor(SR).window_length == L


# --- known signals, hand-computed answers ---------------------------------------------

def test_sine_centroid_rms_and_band():
    amp = 0.5
    f = one_window(tone(1000, 0.05, amp))
    assert f["rms"] == pytest.approx(amp / math.sqrt(2), rel=1e-3)  # exactly 50 periods
    assert abs(f["centroid"] - 1000) < 2 * BIN
    assert f["spread"] < 3 * BIN                                      # one Hann main lobe
    assert f["mid"] == pytest.approx(amp / math.sqrt(2), rel=0.02)    # band RMS (Parseval)
    assert f["bass"] < 0.01 * f["mid"] and f["high"] < 0.01 * f["mid"]
    assert f["flux"] == 0.0                                           # first window


def test_two_sines_centroid_is_amplitude_weighted():
    # Each tone contributes a copy of the window's spectrum scaled by its amplitude, so
    # the amplitude-weighted mean frequency is (1 * 500 + 0.5 * 2000) / 1.5 = 1000 Hz.
    f = one_window(tone(500, 0.05, 1.0) + tone(2000, 0.05, 0.5, phase=1.1))
    assert f["centroid"] == pytest.approx(1000.0, abs=2 * BIN)


def test_symmetric_two_tone_moments():
    # Two equal masses at c - d and c + d: centroid c, spread d, skewness 0, kurtosis
    # d^4 / d^4 = 1. The main lobes' own width adds ~(25 Hz)^2 to d^2 (0.06 %).
    f = one_window(tone(1000, 0.05) + tone(3000, 0.05, phase=1.0))
    assert f["centroid"] == pytest.approx(2000.0, rel=0.005)
    assert f["spread"] == pytest.approx(1000.0, rel=0.005)
    assert abs(f["skewness"]) < 0.02
    assert f["kurtosis"] == pytest.approx(1.0, rel=0.02)


def test_white_noise_centroid_is_quarter_rate():
    # A flat amplitude spectrum from 0 to Nyquist has its mean at Nyquist / 2 = sr / 4.
    noise = np.random.default_rng(1).standard_normal(SR)
    table = analyze(noise, SR)
    assert np.median(table.column("centroid")) == pytest.approx(SR / 4, rel=0.03)


def test_taper_none_is_the_authors_formulas():
    # taper="none" must give the published reference code's numbers: rectangular
    # window, magnitude of rfft zero-padded to N, moments and L1 flux as plain sums.
    rng = np.random.default_rng(2)
    x = tone(700, 0.1, 0.4) + 0.05 * rng.standard_normal(int(0.1 * SR))
    table = analyze(x, SR, fps=20, taper="none")
    freqs = np.fft.rfftfreq(N, 1 / SR)
    prev = None
    for i in range(2):
        w = x[i * L: (i + 1) * L]
        a = np.abs(np.fft.rfft(w, N))
        c = sum(a * freqs) / sum(a)
        s = math.sqrt(sum(a * (freqs - c) ** 2) / sum(a))
        expected = {
            "rms": math.sqrt(np.mean(w**2)), "centroid": c, "spread": s,
            "skewness": sum(a * (freqs - c) ** 3) / (s**3 * sum(a)),
            "kurtosis": sum(a * (freqs - c) ** 4) / (s**4 * sum(a)),
            "flux": 0.0 if prev is None else sum(abs(a - prev)),
        }
        prev = a
        for name, value in expected.items():
            assert table.frame(i)[name] == pytest.approx(value, rel=1e-9), name


# --- librosa as an independent reference ----------------------------------------------

@pytest.mark.parametrize("taper", ["hann", "none"])
def test_centroid_and_spread_match_librosa(taper):
    # Aligning conventions: we analyse each 2205-sample window tapered and zero-padded
    # at its end to N. librosa's stft would centre-pad and centre a shorter window in
    # n_fft, so instead we lay our (tapered, padded) windows end to end and let librosa
    # take one boxcar frame per N samples (center=False, hop = n_fft): its frames are
    # then exactly ours. Its spectral features on the magnitude STFT (power=1, what
    # they use by default) are the same amplitude-weighted moments: centroid, and
    # bandwidth with p=2 (normalised weights) is our spread.
    x = mixed_signal(1.0, seed=3)[int(0.45 * SR):]            # tones, then tones + noise
    table = analyze(x, SR, fps=20, taper=taper)
    n = len(table) - 1                                         # skip the padded last one
    frames = x[: n * L].reshape(n, L)
    if taper == "hann":
        frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(L) / L))
    laid_out = np.concatenate([frames, np.zeros((n, N - L))], axis=1).ravel()
    S = np.abs(librosa.stft(laid_out, n_fft=N, hop_length=N, window="boxcar", center=False))
    centroid = librosa.feature.spectral_centroid(S=S, sr=SR, n_fft=N)[0]
    bandwidth = librosa.feature.spectral_bandwidth(S=S, sr=SR, n_fft=N, centroid=centroid[None], p=2)[0]
    np.testing.assert_allclose(table.column("centroid")[:n], centroid, rtol=1e-6)
    np.testing.assert_allclose(table.column("spread")[:n], bandwidth, rtol=1e-6)
    # rms is taken on the untapered samples; librosa frames them the same way here.
    rms = librosa.feature.rms(y=x[: n * L], frame_length=L, hop_length=L, center=False)[0]
    np.testing.assert_allclose(table.column("rms")[:n], rms, rtol=1e-6)


# --- live equals offline ---------------------------------------------------------------

@pytest.mark.parametrize("fps", [20.0, 100.0, 30.0])
def test_per_window_equals_whole_file(fps):
    x = np.stack([mixed_signal(3.0), mixed_signal(3.0, seed=5)], axis=1)   # stereo
    table = analyze(x, SR, fps=fps)
    extractor = FeatureExtractor(SR, hop=1 / fps)
    live = []
    for i in range(len(table)):
        start = int(round(i * SR / fps))
        live.append(extractor.process(x[start: start + L], i / fps).vector())
    assert len(table) == math.ceil(3.0 * fps)
    np.testing.assert_allclose(np.array(live), table.values, rtol=1e-12, atol=1e-12)
    assert table.column("onset").sum() > 0       # the comparison covered hits as well


# --- robustness --------------------------------------------------------------------------

def test_silence_is_all_zero():
    table = analyze(np.zeros(SR), SR)
    assert np.all(table.values == 0.0)


def test_nan_inf_and_huge_samples_give_finite_values():
    x = mixed_signal(1.0)
    x[100:200] = np.nan
    x[5000] = np.inf
    x[9000] = -np.inf
    x[20000] = 1e300
    table = analyze(x, SR, fps=50)
    assert np.all(np.isfinite(table.values))
    f = one_window(np.full(L, np.nan))
    assert all(v == 0.0 for v in f.values.values())


def test_stereo_is_averaged_to_mono():
    left, right = tone(440, 0.5, 0.2), tone(3000, 0.5, 0.4)
    stereo = analyze(np.stack([left, right], axis=1), SR)
    mono = analyze((left + right) / 2, SR)
    np.testing.assert_array_equal(stereo.values, mono.values)


def test_integer_samples_are_scaled_to_unit_range():
    x = tone(440, 0.2, 0.5)
    expected = analyze(x, SR).column("rms")
    pcm16 = np.round(x * 32768).astype(np.int16)
    pcm8 = np.round(x * 128 + 128).astype(np.uint8)                    # 8-bit WAV is unsigned
    np.testing.assert_allclose(analyze(pcm16, SR).column("rms"), expected, rtol=1e-3)
    np.testing.assert_allclose(analyze(np.stack([pcm16, pcm16], 1), SR).column("rms"), expected, rtol=1e-3)
    np.testing.assert_allclose(analyze(pcm8, SR).column("rms"), expected, rtol=0.02)


def test_a_bad_channel_does_not_silence_the_other():
    x = tone(440, 0.2, 0.5)
    stereo = np.stack([x, np.full_like(x, np.nan)], axis=1)
    np.testing.assert_allclose(analyze(stereo, SR).column("rms"), analyze(x / 2, SR).column("rms"))


def test_partial_last_window_is_zero_padded():
    x = tone(440, 1.01, 0.5)                          # 1.01 s at 20 fps: 21 frames
    table = analyze(x, SR)
    assert len(table) == 21
    tail = x[20 * L:]                                  # 441 samples, then zeros
    assert table.column("rms")[-1] == pytest.approx(math.sqrt(np.sum(tail**2) / L))
    assert np.all(np.isfinite(table.values))
    short = FeatureExtractor(SR).process(x[:100], 0.0)  # a live window before the ring is full
    assert short["rms"] == pytest.approx(math.sqrt(np.sum(x[:100] ** 2) / L))


@pytest.mark.parametrize("sr, fps", [(8000, 20.0), (22050, 2.0), (48000, 5.0), (96000, 60.0)])
def test_other_rates_and_frame_rates(sr, fps):
    x, _ = click_track(120, 5.0, sr=sr)
    x = x + tone(440, 5.0, 0.1, sr=sr)
    table = analyze(x, sr, fps=fps)
    assert len(table) == math.ceil(5.0 * fps) and np.all(np.isfinite(table.values))
    assert FeatureExtractor(sr).window_length == round(0.05 * sr)


def test_empty_input():
    table = analyze(np.zeros(0), SR)
    assert table.values.shape == (0, len(FEATURE_NAMES)) and len(table) == 0
    frame = FeatureExtractor(SR).process(np.zeros(0), 1.5)
    assert frame.time == 1.5 and all(v == 0.0 for v in frame.values.values())
    assert len(analyze(np.zeros((0, 2)), SR)) == 0


def test_flux_is_l1_between_successive_spectra():
    ex = FeatureExtractor(SR)
    first = ex.process(tone(440, 0.05), 0.0)
    second = ex.process(tone(880, 0.05), 0.05)
    third = ex.process(tone(880, 0.05), 0.10)
    assert first["flux"] == 0.0 and second["flux"] > 100 * max(third["flux"], 1e-9)


# --- ratios, onsets, tempo -------------------------------------------------------------

def test_ratios_are_one_at_steady_loudness_whatever_the_gain():
    rng = np.random.default_rng(4)
    steady = tone(90, 4.0) + tone(1000, 4.0) + tone(6000, 4.0) + 0.05 * rng.standard_normal(4 * SR)
    names = ["bass_ratio", "mid_ratio", "high_ratio", "rms_ratio"]
    quiet = analyze(0.1 * steady / 3, SR, fps=50)
    loud = analyze(0.8 * steady / 3, SR, fps=50)
    for name in names:
        q, lo = quiet.column(name), loud.column(name)
        np.testing.assert_allclose(q, lo, rtol=1e-9)         # gain does not matter
        assert np.all(np.abs(q[50:-3] - 1.0) < 0.1), name    # after 1 s of warm-up, before the padded end
    # and silence reads 0, not NaN
    assert np.all(analyze(np.zeros(SR), SR).values[:, 10:14] == 0.0)


def test_ratio_rises_when_it_gets_louder():
    x = np.concatenate([tone(1000, 3.0, 0.1), tone(1000, 1.0, 0.4)])
    ratio = analyze(x, SR).column("mid_ratio")
    assert ratio[59] == pytest.approx(1.0, abs=0.01) and ratio[62] > 3.0


@pytest.mark.parametrize("fps", [20.0, 100.0])
def test_onsets_on_a_click_track(fps):
    x, clicks = click_track(120, 4.0)
    table = analyze(x, SR, fps=fps)
    hits = np.flatnonzero(table.column("onset"))
    assert len(hits) == len(clicks)
    starts = np.round(hits * SR / fps) / SR
    # each hit is the first window that contains its click
    assert np.all(starts <= clicks) and np.all(clicks < starts + L / SR)
    assert np.all(clicks - starts < L / SR + 1 / fps)
    if fps == 20.0:
        np.testing.assert_array_equal(hits, np.floor(clicks * fps).astype(int))


@pytest.mark.parametrize("fps", [20.0, 100.0])
def test_no_onsets_on_a_steady_tone(fps):
    x = tone(440, 3.0, 0.5) + tone(1500, 3.0, 0.2)
    table = analyze(x, SR, fps=fps)
    complete = int(math.floor((len(x) - L) * fps / SR)) + 1  # frames whose window is all signal
    assert table.column("onset")[:complete].sum() == 0


@pytest.mark.parametrize("fps", [20.0, 100.0])
def test_tempo_of_a_click_track(fps):
    x, _ = click_track(120, 10.0)
    tempo = analyze(x, SR, fps=fps).column("tempo")
    assert np.all(tempo[: int(TEMPO_MIN_HISTORY_S * fps) - 1] == 0.0)   # not yet confident
    settled = tempo[int(5 * fps):]
    assert np.all(np.abs(settled - 120.0) < 2.0)


def test_no_tempo_without_rhythm():
    rng = np.random.default_rng(6)
    for x in (tone(440, 8.0, 0.5), 0.2 * rng.standard_normal(8 * SR)):
        assert np.all(analyze(x, SR).column("tempo") == 0.0)


# --- API edges -----------------------------------------------------------------------

def test_bad_arguments_say_what_is_allowed():
    for bad in (0, -44100, float("nan"), "fast"):
        with pytest.raises(ValueError, match="sample_rate"):
            analyze(np.zeros(10), bad)
        with pytest.raises(ValueError, match="sample_rate"):
            FeatureExtractor(bad)
    with pytest.raises(ValueError, match="fps"):
        analyze(np.zeros(10), SR, fps=0)
    with pytest.raises(ValueError, match="hop"):
        FeatureExtractor(SR, hop=-0.01)
    with pytest.raises(ValueError, match="taper"):
        FeatureExtractor(SR, taper="blackman")
    with pytest.raises(ValueError, match="at most 2205"):
        FeatureExtractor(SR).process(np.zeros(L + 1), 0.0)
    with pytest.raises(ValueError, match="channels"):
        analyze(np.zeros((4, 2, 2)), SR)


def test_unknown_feature_names_list_the_allowed_ones():
    table = analyze(tone(440, 0.2), SR)
    for lookup in (lambda: table.column("loudness"), lambda: table.frame(0)["loudness"]):
        with pytest.raises(KeyError, match="centroid"):
            lookup()
        with pytest.raises(ValueError, match="allowed: rms, centroid"):
            lookup()


def test_table_frames_csv_and_iteration(tmp_path):
    table = analyze(mixed_signal(1.0), SR)
    assert isinstance(table, FeatureTable) and table.names == FEATURE_NAMES
    assert table.values.dtype == np.float64 and table.values.shape == (20, len(FEATURE_NAMES))
    np.testing.assert_allclose(table.times, np.arange(20) / 20)
    frames = list(table)
    assert isinstance(frames[3], FeatureFrame) and frames[3]["rms"] == table.column("rms")[3]
    np.testing.assert_array_equal(frames[3].vector(), table.values[3])

    path = tmp_path / "features.csv"
    path.write_text("old")
    table.to_csv(path)
    header = path.read_text().splitlines()[0]
    assert header == "time," + ",".join(FEATURE_NAMES)
    back = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_allclose(back[:, 1:], table.values, rtol=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["features.csv"]   # no temp file left
