"""A real sound card for audio tests: a private PulseAudio daemon with a null sink.

``from pulse import pulse`` in a test module makes the session fixture available. It starts
its own ``pulseaudio`` (never the desktop's: its own socket, runtime and state folders, no
default script, so nothing else is loaded), loads ``module-null-sink sink_name=netbend_test``
and makes that sink and its monitor the defaults. $PULSE_SERVER points this process and the
players it starts at the daemon while the session runs.

The chain a test exercises is the one a show uses on a Linux laptop:
PortAudio (ALSA host API) -> ALSA's pulse plugin (libasound2-plugins; PortAudio devices
"pulse" and "default") -> PulseAudio -> the null sink's monitor. Whatever a player writes
into the sink comes back out of the monitor.

PortAudio lists devices once, when it initialises; if sounddevice was imported before the
daemon ran it saw no devices, so the fixture re-initialises PortAudio (no stream is open
then). An idle null sink runs at a 2 s latency and takes up to 2 s to answer a stream
that opens on its monitor, and for about a second more reports that stream's blocks as
0.5-0.7 s old (they are not); so a discarding recorder (``pacat --record``) keeps the sink
at low latency while it is loaded.

If PulseAudio or the ALSA plugin is missing the fixture FAILS (it does not skip): live
audio is part of the product. Install with
``apt-get install -y libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from helpers_process import stop_process, wait_or_kill

SINK = "netbend_test"
RATE = 44100
START_TIMEOUT = 10.0  # s
INSTALL = "apt-get install -y libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins"


@dataclass
class PulseServer:
    server: str                   # "unix:/.../native", what $PULSE_SERVER is set to
    process: subprocess.Popen
    folder: Path
    sink: str = SINK
    module: int | None = None     # the null sink's module index while it is loaded
    env: dict = field(default_factory=dict)

    @property
    def monitor(self) -> str:
        return f"{self.sink}.monitor"

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    keeper: subprocess.Popen | None = None

    def load_sink(self) -> None:
        """Load the null sink (float, so no quantisation noise), make it the default, and
        keep it awake at low latency with a recorder that discards what it hears: an idle
        null sink sleeps at 2 s latency and takes that long to answer a new stream."""
        self.module = int(self.pactl("load-module", "module-null-sink", f"sink_name={self.sink}",
                                     "format=float32le", f"rate={RATE}", "channels=2"))
        self.pactl("set-default-sink", self.sink)
        self.pactl("set-default-source", self.monitor)
        self.keeper = subprocess.Popen(
            ["pacat", "--record", "--raw", "--latency-msec=5", f"--device={self.monitor}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)

    def unload_sink(self) -> None:
        """Remove the sink: its monitor disappears and every stream on it dies."""
        self._stop_keeper()
        if self.module is not None:
            self.pactl("unload-module", str(self.module))
            self.module = None

    def _stop_keeper(self) -> None:
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            stop_process(keeper)

    def player(self) -> Player:
        return Player(self)

    def log(self) -> str:
        path = self.folder / "pulse.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Player:
    """A ``pacat`` process playing float32 mono into the sink, from another process.

    The stream is created (and waited for) on entry, so ``play`` measures audio, not process
    start: it returns the monotonic time just before the first sample is handed to pacat.
    """

    def __init__(self, pulse: PulseServer, latency_ms: int = 50):
        self.pulse = pulse
        self.latency_ms = latency_ms
        self.process: subprocess.Popen | None = None
        self._writer: threading.Thread | None = None

    def __enter__(self) -> Player:
        self._err = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            ["pacat", "--playback", "--verbose", "--raw", "--format=float32le", f"--rate={RATE}",
             "--channels=1", f"--latency-msec={self.latency_ms}", f"--device={self.pulse.sink}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err, env=self.pulse.env)
        deadline = time.monotonic() + 5.0
        while b"Stream successfully created" not in self._stderr():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"pacat did not start: {self._stderr().decode(errors='replace')}")
            time.sleep(0.005)
        return self

    def _stderr(self) -> bytes:
        self._err.seek(0)
        return self._err.read()

    def play(self, samples: np.ndarray) -> float:
        """Queue mono float samples (in another thread, as pacat takes them in real time);
        returns time.monotonic() taken just before the first sample was written."""
        if self._writer is not None:
            self._writer.join()
        data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
        started = threading.Event()
        when = [0.0]

        def write() -> None:
            when[0] = time.monotonic()
            started.set()
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError):  # the sink went away under pacat
                pass

        self._writer = threading.Thread(target=write, daemon=True)
        self._writer.start()
        started.wait()
        return when[0]

    def close(self) -> None:
        if self.process is None:
            return
        try:
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        wait_or_kill(self.process)  # a closed stdin ends pacat once it has played what it holds
        if self._writer is not None:
            self._writer.join(timeout=5)
        self._err.close()
        self.process = None

    def __exit__(self, *exc) -> None:
        self.close()


def tone(seconds: float, freq: float = 1000.0, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    """A sine of `seconds`, float32, starting at phase 0."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _reinitialise_portaudio() -> list[dict]:
    """Make PortAudio list devices again (it does so only when it initialises)."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()
    return list(sd.query_devices())


def _start_daemon(folder: Path) -> PulseServer:
    """A pulseaudio of its own in ``folder`` (socket, runtime, state, config, log), not yet answering."""
    runtime = folder / "run"
    runtime.mkdir(mode=0o700)
    socket = folder / "native"
    env = dict(os.environ, PULSE_SERVER=f"unix:{socket}", XDG_RUNTIME_DIR=str(runtime),
               PULSE_RUNTIME_PATH=str(runtime), PULSE_STATE_PATH=str(folder / "state"),
               PULSE_CONFIG_PATH=str(folder / "config"), HOME=str(folder))
    # As root pulseaudio warns that it is meant for --system, but a per-user daemon with its
    # own socket works and is what we want: --system would need the pulse user and D-Bus.
    process = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
         "--system=no", "--realtime=no", "--high-priority=no", "--disallow-exit=no",
         f"--log-target=file:{folder / 'pulse.log'}", "--log-level=info",
         "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True)
    client_env = dict(os.environ, PULSE_SERVER=f"unix:{socket}")
    return PulseServer(server=f"unix:{socket}", process=process, folder=folder, env=client_env)


def _wait_until_answering(server: PulseServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"pulseaudio exited with {server.process.returncode}: {server.log()[-800:]}", pytrace=False)
        try:
            server.pactl("info")
            return
        except (RuntimeError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                pytest.fail(f"pulseaudio did not answer within {START_TIMEOUT:g} s: "
                            f"{server.log()[-800:]}", pytrace=False)
            time.sleep(0.05)


def _check_portaudio_sees_pulse() -> None:
    try:
        devices = _reinitialise_portaudio()
    except OSError as e:
        pytest.fail(f"PortAudio is not available ({e}): {INSTALL}", pytrace=False)
    if not any(d["name"] == "pulse" and d["max_input_channels"] > 0 for d in devices):
        pytest.fail("PortAudio does not see the ALSA 'pulse' device although PulseAudio runs; "
                    f"the ALSA pulse plugin is missing: {INSTALL}. PortAudio sees: "
                    f"{[d['name'] for d in devices]}", pytrace=False)


@pytest.fixture(scope="session")
def pulse():
    missing = [exe for exe in ("pulseaudio", "pactl", "pacat") if shutil.which(exe) is None]
    if missing:
        pytest.fail(f"PulseAudio is not installed ({', '.join(missing)} missing), so live audio "
                    f"cannot be tested: {INSTALL}", pytrace=False)
    folder = Path(tempfile.mkdtemp(prefix="netbend-pulse-"))
    server = _start_daemon(folder)
    try:
        with pytest.MonkeyPatch.context() as patch:  # $PULSE_SERVER as it was once this block ends
            _wait_until_answering(server)
            server.load_sink()
            patch.setenv("PULSE_SERVER", server.server)
            _check_portaudio_sees_pulse()
            yield server
    finally:
        server._stop_keeper()
        stop_process(server.process)
        if "sounddevice" in sys.modules:
            try:
                _reinitialise_portaudio()  # forget the daemon's devices
            except Exception:
                pass
        shutil.rmtree(folder, ignore_errors=True)
