"""live/media.py and live/cli/video.py: decoding audio files, writing MP4s with sound, reading them back."""

from fractions import Fraction

import av
import numpy as np
import pytest

from live.cli.video import VideoWriter
from live.media import MediaError, load_audio, probe, write_audio_wav

RATE = 44100
SECONDS = 1.5
FREQS = (440.0, 660.0)  # left, right: different so a channel swap would show
AMPS = (0.5, 0.25)


@pytest.fixture(scope="module")
def sine() -> np.ndarray:
    t = np.arange(int(SECONDS * RATE)) / RATE
    return np.stack([a * np.sin(2 * np.pi * f * t) for f, a in zip(FREQS, AMPS)], axis=1).astype(
        np.float32
    )  # (n, 2)


def encode(path, samples, rate, codec, fmt, *, sample_fmt=None, options=None):
    """Encode (n, ch) float samples with PyAV, the way a user's file would have been made."""
    layout = {1: "mono", 2: "stereo"}[samples.shape[1]]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        if sample_fmt:
            stream.format = sample_fmt
        if options:
            stream.options = options
        for i in range(0, len(samples), 4096):
            chunk = np.ascontiguousarray(samples[i : i + 4096].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0))


# ------------------------------------------------------------------ round trips

# (suffix, codec, container, options, rms tolerance, extra samples allowed)
LOSSY = [
    ("ogg", "vorbis", "ogg", {"strict": "experimental"}, 0.03, 2048),
    ("m4a", "aac", "ipod", None, 0.03, 2048),
    # LAME at its default 128 kb/s drops a pure tone's level by ~5 %
    ("mp3", "libmp3lame", "mp3", None, 0.08, 2048),
]


@pytest.mark.parametrize("suffix,codec,fmt,options,tol,slack", LOSSY, ids=[c[0] for c in LOSSY])
def test_lossy_round_trip(tmp_path, sine, suffix, codec, fmt, options, tol, slack):
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = encode(tmp_path / f"sine.{suffix}", sine, RATE, codec, fmt, options=options)
    samples, rate = load_audio(path)
    assert rate == RATE and samples.dtype == np.float32 and samples.shape[1] == 2
    assert abs(len(samples) - len(sine)) <= slack
    assert np.abs(samples).max() <= 1.0
    np.testing.assert_allclose(rms(samples), rms(sine), rtol=tol)
    for ch, f in enumerate(FREQS):
        assert abs(peak_hz(samples[:, ch], rate) - f) < 2.0


def test_wav_round_trip_is_exact_to_16_bits(tmp_path, sine):
    write_audio_wav(tmp_path / "sine.wav", sine, RATE)
    samples, rate = load_audio(tmp_path / "sine.wav")
    assert (samples.shape, samples.dtype, rate) == (sine.shape, np.float32, RATE)
    assert np.abs(samples - sine).max() < 1.5 / 32767
    assert [p.name for p in tmp_path.iterdir()] == ["sine.wav"]  # no partial file left


def test_flac_round_trip_is_lossless(tmp_path, sine):
    path = encode(tmp_path / "sine.flac", sine, RATE, "flac", "flac")
    samples, rate = load_audio(path)
    assert samples.shape == sine.shape and rate == RATE
    assert np.abs(samples - sine).max() < 1.5 / 32767


# every way FFmpeg hands out samples: packed and planar, unsigned and signed integers, floats
# (NUT takes the planar PCM codecs that WAV cannot hold)
SAMPLE_CODECS = [
    ("wav", "pcm_u8", 1 / 128),  # u8, offset binary
    ("wav", "pcm_s16le", 1 / 32767),  # s16
    ("wav", "pcm_s24le", 1 / 32767),  # s32
    ("wav", "pcm_s32le", 1 / 32767),  # s32
    ("wav", "pcm_f32le", 1 / 32767),  # flt
    ("wav", "pcm_f64le", 1 / 32767),  # dbl
    ("nut", "pcm_s8_planar", 1 / 128),  # u8p
    ("nut", "pcm_s16le_planar", 1 / 32767),  # s16p
    ("nut", "pcm_s32le_planar", 1 / 32767),  # s32p
]


@pytest.mark.parametrize("fmt,codec,step", SAMPLE_CODECS, ids=[c[1] for c in SAMPLE_CODECS])
def test_sample_formats_scale_to_unit_range(tmp_path, sine, fmt, codec, step):
    path = encode(tmp_path / f"{codec}.{fmt}", sine, RATE, codec, fmt)
    samples, rate = load_audio(path)
    assert samples.shape == sine.shape and samples.dtype == np.float32 and rate == RATE
    assert np.abs(samples - sine).max() < 1.5 * step


def test_resample_gives_the_right_length_and_pitch(tmp_path, sine):
    write_audio_wav(tmp_path / "sine.wav", sine, RATE)
    samples, rate = load_audio(tmp_path / "sine.wav", sample_rate=22050)
    assert rate == 22050 and samples.dtype == np.float32
    assert abs(len(samples) - int(SECONDS * 22050)) <= 1
    for ch, f in enumerate(FREQS):
        assert abs(peak_hz(samples[:, ch], rate) - f) < 2.0
    np.testing.assert_allclose(rms(samples), rms(sine), rtol=0.02)


def test_mono_averages_channels(tmp_path, sine):
    write_audio_wav(tmp_path / "sine.wav", sine, RATE)
    stereo, _ = load_audio(tmp_path / "sine.wav")
    mono, rate = load_audio(tmp_path / "sine.wav", mono=True)
    assert mono.shape == (len(sine),) and mono.dtype == np.float32 and rate == RATE
    np.testing.assert_allclose(mono, stereo.mean(axis=1), atol=1e-6)


def test_span_selects_seconds(tmp_path, sine):
    write_audio_wav(tmp_path / "sine.wav", sine, RATE)
    full, _ = load_audio(tmp_path / "sine.wav")
    span, _ = load_audio(tmp_path / "sine.wav", start=0.5, end=1.0)
    assert span.shape == (RATE // 2, 2)
    np.testing.assert_array_equal(span, full[RATE // 2 : RATE])
    tail, _ = load_audio(tmp_path / "sine.wav", start=1.0)
    np.testing.assert_array_equal(tail, full[RATE:])
    whole, _ = load_audio(tmp_path / "sine.wav", end=SECONDS)
    assert len(whole) == len(sine)


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match=r"nope\.wav: no such file.*wav, flac, mp3"):
        load_audio(tmp_path / "nope.wav")


def test_text_file_named_wav(tmp_path):
    (tmp_path / "notes.wav").write_text("these are not samples\n" * 20)
    with pytest.raises(MediaError, match=r"notes\.wav: not a media file.*wav, flac, mp3"):
        load_audio(tmp_path / "notes.wav")


def test_empty_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.wav: the file is empty"):
        load_audio(tmp_path / "empty.wav")
    write_audio_wav(tmp_path / "silent.wav", np.zeros((0, 2), np.float32), RATE)
    with pytest.raises(MediaError, match=r"silent\.wav: .*no samples"):
        load_audio(tmp_path / "silent.wav")


def test_video_without_audio(tmp_path):
    with VideoWriter(tmp_path / "mute.mp4", 32, 32, fps=10) as video:
        for _ in range(3):
            video.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(MediaError, match=r"mute\.mp4: has no audio stream \(streams: video\)"):
        load_audio(tmp_path / "mute.mp4")


@pytest.mark.parametrize(
    "start,end,message",
    [
        (1.0, 2.0, r"lasts 1\.500 s"),
        (2.0, None, r"lasts 1\.500 s"),
        (-0.5, 1.0, r"need 0 <= start < end"),
        (1.0, 0.5, r"need 0 <= start < end"),
    ],
)
def test_bad_span(tmp_path, sine, start, end, message):
    write_audio_wav(tmp_path / "sine.wav", sine, RATE)
    with pytest.raises(MediaError, match=message):
        load_audio(tmp_path / "sine.wav", start=start, end=end)


# ------------------------------------------------------------------ video


def gradient(height: int, width: int, shift: int = 0) -> np.ndarray:
    """A smooth RGB frame: chroma subsampling barely touches it, so errors mean a real bug."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1) + shift) % 256
    g = y * 255 // max(height - 1, 1)
    b = np.full_like(x, 128)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def first_frame(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_video_with_audio(tmp_path):
    t = np.arange(5 * RATE) / RATE
    audio = np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 64, 64, fps=20, audio=(audio, RATE)) as video:
        for i in range(100):
            video.write(gradient(64, 64, shift=i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]

    info = probe(out)
    assert (info.frames, info.fps, info.width, info.height) == (100, 20.0, 64, 64)
    assert (info.video_codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("aac", RATE, 2)
    assert info.audio_duration == pytest.approx(5.0, abs=0.05)
    assert info.audio_samples / RATE == pytest.approx(5.0, abs=0.05)  # decodable, not just declared

    error = np.abs(first_frame(out).astype(int) - gradient(64, 64).astype(int)).mean()
    assert error < 3.0

    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: index first, plays while loading

    # the soundtrack reads back as the sound that went in
    back, rate = load_audio(out)
    assert rate == RATE and abs(len(back) - len(audio)) <= 2048
    assert abs(peak_hz(back[:, 0], rate) - 220) < 2.0


def test_audio_from_a_file(tmp_path, sine):
    write_audio_wav(tmp_path / "voice.wav", sine[:, :1], RATE)
    voice = tmp_path / "voice.wav"
    with VideoWriter(tmp_path / "out.mp4", 32, 32, fps=10, audio_path=voice) as video:
        for _ in range(15):
            video.write(np.zeros((32, 32, 3), np.uint8))
    info = probe(tmp_path / "out.mp4")
    assert (info.audio_codec, info.audio_channels) == ("aac", 1)
    assert info.audio_duration == pytest.approx(SECONDS, abs=0.05)


def test_unusual_audio_rate_is_resampled_for_aac(tmp_path):
    audio = np.zeros((10000, 2), np.float32)  # 1 s at 10 kHz, a rate AAC does not take
    with VideoWriter(tmp_path / "out.mp4", 32, 32, fps=10, audio=(audio, 10000)) as video:
        for _ in range(10):
            video.write(np.zeros((32, 32, 3), np.uint8))
    info = probe(tmp_path / "out.mp4")
    assert info.audio_sample_rate == 48000
    assert info.audio_duration == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    "fps,expected", [(29.97, Fraction(30000, 1001)), ("25/2", Fraction(25, 2))]
)
def test_fractional_fps(tmp_path, fps, expected):
    with VideoWriter(tmp_path / "out.mp4", 32, 32, fps=fps) as video:
        assert video.fps == expected
        for i in range(30):
            video.write(gradient(32, 32, shift=i))
    info = probe(tmp_path / "out.mp4")
    assert info.frames == 30
    assert info.fps == pytest.approx(float(expected), rel=1e-4)
    assert info.video_duration == pytest.approx(30 / float(expected), rel=1e-4)


def test_exception_leaves_no_file(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="render failed"):
        silence = np.zeros((RATE, 2), np.float32)
        with VideoWriter(out, 32, 32, fps=10, audio=(silence, RATE)) as video:
            for _ in range(5):
                video.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []


def test_failed_render_keeps_the_previous_file(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"last night's render")
    with pytest.raises(ValueError, match=r"\(32, 32, 3\) uint8"):
        with VideoWriter(out, 32, 32, fps=10) as video:
            video.write(np.zeros((32, 32, 3), np.uint8))
            video.write(np.zeros((16, 16, 3), np.uint8))  # wrong size
    assert out.read_bytes() == b"last night's render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_no_frames_is_an_error_and_no_file(tmp_path):
    with pytest.raises(ValueError, match="no frames were written"):
        with VideoWriter(tmp_path / "out.mp4", 32, 32, fps=10):
            pass
    assert list(tmp_path.iterdir()) == []


def test_odd_size_is_padded_to_even(tmp_path):
    frame = gradient(33, 63)
    with VideoWriter(tmp_path / "odd.mp4", 63, 33, fps=10) as video:
        assert video.encoded_size == (64, 34)
        for _ in range(3):
            video.write(frame)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.pix_fmt, info.frames) == (64, 34, "yuv420p", 3)
    decoded = first_frame(tmp_path / "odd.mp4")[:33, :63]
    assert np.abs(decoded.astype(int) - frame.astype(int)).mean() < 3.0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(fps=0), "fps must be positive"),
        (dict(fps="fast"), "fps must be a positive number"),
        (dict(fps=10, crf=80), "crf must be in 0..51"),
        (dict(fps=10, preset="superquick"), "preset must be one of ultrafast"),
        (dict(fps=10, audio=(np.zeros((100, 6), np.float32), RATE)), "1 or 2 channels"),
        (dict(fps=10, audio=(np.zeros((100, 2)), RATE), audio_path="x.wav"), "not both"),
    ],
)
def test_bad_writer_settings(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / "out.mp4", 32, 32, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        VideoWriter(tmp_path / "no" / "out.mp4", 32, 32, fps=10)


def test_probe_missing_file(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "gone.mp4")
