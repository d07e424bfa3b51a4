"""A real NDI receiver for tests, in its own process (cyndilib's receive() holds the GIL
while it waits, so in the show's process it would stall the show it is checking).

    python tests/ndi_receiver.py NAME COUNT OUT.npz [--audio] [--timeout S]

finds the source "HOST (NAME)", prints READY once connected, then saves up to COUNT video
frames as (n, H, W, 3) uint8 RGB (and, with --audio, every audio sample) to OUT.npz.
``loopback_config(folder)`` writes the NDI config that makes discovery work on loopback
(set NDI_CONFIG_DIR to that folder for the sender and this receiver).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LOOPBACK = {"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}, "unicast": {"enable": True}}}


def loopback_config(folder) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ndi-config.v1.json").write_text(json.dumps(LOOPBACK))
    return folder


def main() -> int:
    from cyndilib import AudioRecvFrame, Finder, Receiver, RecvBandwidth, RecvColorFormat, VideoRecvFrame
    from cyndilib.receiver import ReceiveFrameType

    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("count", type=int)
    ap.add_argument("out")
    ap.add_argument("--audio", action="store_true")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    finder = Finder()
    finder.open()
    source = None
    while source is None and time.monotonic() < deadline:
        finder.wait_for_sources(0.5)
        for name in finder.get_source_names():
            if name.endswith(f"({args.name})"):
                source = finder.get_source(name)
    if source is None:
        print("NOT FOUND", finder.get_source_names(), flush=True)
        return 1
    receiver = Receiver(color_format=RecvColorFormat.RGBX_RGBA, bandwidth=RecvBandwidth.highest)
    video = VideoRecvFrame()
    receiver.set_video_frame(video)
    audio = AudioRecvFrame() if args.audio else None
    if audio is not None:
        receiver.set_audio_frame(audio)
    receiver.set_source(source)
    while not receiver.is_connected() and time.monotonic() < deadline:
        receiver.receive(ReceiveFrameType.recv_all, 50)
    print("READY", flush=True)
    frames, sounds, sizes = [], [], set()
    kinds = ReceiveFrameType.recv_video | (ReceiveFrameType.recv_audio if audio is not None else 0)
    while len(frames) < args.count and time.monotonic() < deadline:
        got = receiver.receive(kinds, 200)
        if got & ReceiveFrameType.recv_video:
            w, h = video.get_resolution()
            buf = np.empty(video.get_buffer_size(), np.uint8)
            video.fill_p_data(buf)
            stride = video.get_line_stride()
            frames.append(buf.reshape(h, stride)[:, :w * 4].reshape(h, w, 4)[..., :3].copy())
            sizes.add((w, h))
        if audio is not None and got & ReceiveFrameType.recv_audio:
            data, _ = audio.get_all_read_data()
            sounds.append(np.asarray(data, np.float32)[0].copy())
    shapes = {f.shape for f in frames}
    video_out = np.stack(frames) if len(shapes) == 1 else np.zeros((0, 1, 1, 3), np.uint8)
    np.savez(args.out, video=video_out, audio=np.concatenate(sounds) if sounds else np.zeros(0, np.float32))
    print("GOT", len(frames), sorted(sizes), flush=True)
    receiver.disconnect()
    finder.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
