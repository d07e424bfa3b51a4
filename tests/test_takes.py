"""Takes: recorded commands/features come back identical; a killed recording stays readable."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from engine.features import FEATURE_NAMES, FeatureFrame
from live.control.state import Command, ShowState
from live.control.takes import TakeError, TakeRecorder, load_take


def test_round_trip(tmp_path):
    clock = iter(np.arange(100.0, 200.0, 0.25)).__next__
    state = ShowState(prompt="neon")
    with TakeRecorder(tmp_path / "t", start_state=state, feature_names=FEATURE_NAMES, clock=clock) as rec:
        rec.command(Command("/netbend/bend/1/operator", ("add",), time=101.0))
        rec.features([FeatureFrame(101.5, {n: 0.5 for n in FEATURE_NAMES})])
        rec.command(Command("/netbend/prompt", ("rain",), time=102.0))
    take = load_take(tmp_path / "t")
    assert take.start_state == state
    assert [(c.address, c.args, c.time) for c in take.commands] == [
        ("/netbend/bend/1/operator", ("add",), 1.0), ("/netbend/prompt", ("rain",), 2.0)]
    assert take.features.shape == (1, 1 + len(FEATURE_NAMES)) and take.features_at(1.6)["rms"] == 0.5


def test_never_overwrites_a_take(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "take.json").write_text("{}")
    with pytest.raises(TakeError, match="not empty"):
        TakeRecorder(tmp_path / "t", start_state=ShowState(), feature_names=FEATURE_NAMES)


def test_take_json_is_written_atomically_and_synced_on_the_writer_thread(tmp_path, monkeypatch):
    import threading

    real_fsync, synced = os.fsync, []

    def fsync(fd):
        synced.append((threading.current_thread(), os.fstat(fd).st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with TakeRecorder(tmp_path / "t", start_state=ShowState(prompt="neon"), feature_names=FEATURE_NAMES):
        pass
    assert load_take(tmp_path / "t").start_state == ShowState(prompt="neon")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["commands.jsonl", "features.f64", "take.json"]
    inodes = [inode for _, inode in synced]  # a rename keeps the temp file's inode
    assert (tmp_path / "t" / "take.json").stat().st_ino in inodes and (tmp_path / "t").stat().st_ino in inodes
    assert threading.current_thread() not in [thread for thread, _ in synced]


def test_not_a_take(tmp_path):
    with pytest.raises(TakeError, match="no take.json"):
        load_take(tmp_path)


def test_killed_mid_take_is_readable_up_to_the_last_second(tmp_path):
    folder = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import time, sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from engine.features import FEATURE_NAMES, FeatureFrame
        from live.control.state import Command, ShowState
        from live.control.takes import TakeRecorder
        rec = TakeRecorder({str(folder)!r}, start_state=ShowState(), feature_names=FEATURE_NAMES)
        i = 0
        while True:
            now = time.monotonic()
            rec.command(Command("/netbend/seed", (i,), time=now))
            rec.features([FeatureFrame(now, {{n: float(i) for n in FEATURE_NAMES}})])
            print(i, flush=True)
            i += 1
            time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # recording has begun (imports take seconds on a loaded machine)
    time.sleep(3.0)
    proc.send_signal(signal.SIGKILL)  # no cleanup, no flush: a crash
    proc.wait(timeout=10)
    written = [int(line) for line in (first + proc.stdout.read()).split()]
    take = load_take(folder)
    seeds = [c.args[0] for c in take.commands]
    assert seeds == list(range(len(seeds)))  # in order, nothing torn mid-way kept
    # at most a second (about 100 commands at 10 ms) lost
    assert len(seeds) >= written[-1] - 100, (len(seeds), written[-1])
    assert len(take.features) >= written[-1] - 100
