"""A stand-alone OSC sender for tests/test_osc.py, run as a separate process.

    python tests/osc_client.py PORT STEPS_JSON

Sends over UDP to 127.0.0.1:PORT with python-osc's SimpleUDPClient and listens for
replies on the same socket (so the server's replies to "the sender" land here). Prints
one JSON object per line: {"sent": address, "t": ...} for each send and
{"address": ..., "args": [...], "t": ...} for each reply, t in seconds since start.

Steps (a JSON list), run in order:
    {"send": "/netbend/prompt", "args": ["fog"], "types": "s"}   types optional (i f d h s ...)
    {"raw": "<hex bytes>"}                                         any datagram at all
    {"bundle": [["/a", [1]], ["/b", ["x"]]], "ahead": 60.0}       time tag now + ahead seconds
    {"sleep": 0.1}
    {"recv": {"until": "/netbend/state/end", "count": 3, "timeout": 2.0}}
        collect replies until that address arrives, or `count` replies, or `timeout` s
Only python-osc and the standard library are used: this process knows nothing of netbend.
"""
from __future__ import annotations

import json
import sys
import time

from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

START = time.monotonic()


class Raw:
    """Any bytes, in the shape UDPClient.send takes."""

    def __init__(self, dgram: bytes):
        self.dgram = dgram


def emit(**fields) -> None:
    fields["t"] = time.monotonic() - START
    print(json.dumps(fields), flush=True)


def message(address: str, args: list, types: str | None = None) -> OscMessage:
    builder = OscMessageBuilder(address=address)
    for i, value in enumerate(args):
        builder.add_arg(value, types[i] if types else None)
    return builder.build()


def receive(client: SimpleUDPClient, until: str | None, count: int | None, timeout: float) -> None:
    deadline, got = time.monotonic() + timeout, 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        data = client.receive(left)
        if not data:
            return
        reply = OscMessage(data)
        emit(address=reply.address, args=[a if not isinstance(a, bytes) else a.hex() for a in reply.params])
        got += 1
        if reply.address == until or (count is not None and got >= count):
            return


def main(port: int, steps: list) -> None:
    with SimpleUDPClient("127.0.0.1", port) as client:
        for step in steps:
            if "send" in step:
                client.send(message(step["send"], step.get("args", []), step.get("types")))
                emit(sent=step["send"])
            elif "raw" in step:
                client.send(Raw(bytes.fromhex(step["raw"])))
                emit(sent="raw")
            elif "bundle" in step:
                bundle = OscBundleBuilder(time.time() + float(step.get("ahead", 0.0)))
                for address, args in step["bundle"]:
                    bundle.add_content(message(address, args))
                client.send(bundle.build())
                emit(sent="bundle")
            elif "sleep" in step:
                time.sleep(float(step["sleep"]))
            elif "recv" in step:
                r = step["recv"]
                receive(client, r.get("until"), r.get("count"), float(r.get("timeout", 2.0)))
            else:
                raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(int(sys.argv[1]), json.loads(sys.argv[2]))
