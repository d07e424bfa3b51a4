"""parse_packet: messages and nested bundles in the sender's order, never sleeping on a time
tag; malformed packets refused with a reason."""
from __future__ import annotations

import random
import struct
import time

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage

from live.control.osc_packets import PacketError, parse_packet
from helpers_osc import GOOD, osc


def test_parse_packet_reads_messages_and_nested_bundles_in_order():
    assert parse_packet(osc("/netbend/strength", 0.5)) == [("/netbend/strength", (0.5,), 0.0)]
    assert parse_packet(osc("/netbend/seed", 2**40, 0.25, types="hd")) == [("/netbend/seed", (2**40, 0.25), 0.0)]
    assert parse_packet(osc("/netbend/record/start")) == [("/netbend/record/start", (), 0.0)]
    assert parse_packet(osc("/netbend/x", True, False, "s", types="TFs")) == [("/netbend/x", (True, False, "s"), 0.0)]

    when = time.time() + 60.0
    inner = OscBundleBuilder(when + 1.0)
    inner.add_content(OscMessage(osc("/b", "x")))
    outer = OscBundleBuilder(when)
    outer.add_content(OscMessage(osc("/z", 1)))  # sender's order is kept, not sorted
    outer.add_content(inner.build())
    outer.add_content(OscMessage(osc("/a", 2.0)))
    start = time.monotonic()
    got = parse_packet(outer.build().dgram)
    assert time.monotonic() - start < 0.05  # a future time tag never sleeps
    assert [(a, args) for a, args, _ in got] == [("/z", (1,)), ("/b", ("x",)), ("/a", (2.0,))]
    assert got[0][2] == pytest.approx(when, abs=1e-3) and got[1][2] == pytest.approx(when + 1.0, abs=1e-3)


MALFORMED = [  # (datagram, address in the reply, reason pattern)
    (b"", "", r"empty packet"),
    (bytes(random.Random(0).randrange(32, 35) for _ in range(40)), "", r"not an OSC packet"),
    (b"\x00\xff\x13garbage", "", r"not an OSC packet"),
    (b"/netbend/strength", "", r"address string is not terminated"),
    (b"/netbend/\xff\xfe\x00\x00", "", r"not UTF-8"),
    (osc("/netbend/seed", 7)[:-2], "/netbend/seed", r"truncated OSC message: argument 1 \('i'\) needs 4 bytes"),
    (osc("/netbend/prompt", "fog")[:-4], "/netbend/prompt", r"truncated OSC message: string argument 1"),
    (osc("/netbend/seed")[:-4] + b",i\x00\x00", "/netbend/seed", r"truncated"),
    (b"/netbend/strength\x00\x00\x00,x\x00\x00\x00\x00\x00\x01", "/netbend/strength", r"unknown type tag 'x'"),
    (b"/netbend/strength\x00\x00\x00f\x00\x00\x00\x00\x00\x00\x01", "/netbend/strength", r"must start with ','"),
    (b"/netbend/prompt\x00,s\x00\x00\xff\xfe\x00\x00", "/netbend/prompt", r"not UTF-8"),
    (b"#bundle\x00\x00\x00", "", r"truncated time tag"),
    (b"#bundle\x00" + bytes(7) + b"\x01" + struct.pack(">i", 1000) + GOOD, "", r"does not fit"),
    (b"#bundle\x00" + bytes(7) + b"\x01" + struct.pack(">i", 8) + b"garbage!", "", r"neither a message"),
    (b"#bundle\x00" + bytes(7) + b"\x01" + b"\x00\x00", "", r"truncated element size"),
]


@pytest.mark.parametrize("dgram,address,reason", MALFORMED, ids=range(len(MALFORMED)))
def test_parse_packet_refuses_malformed_packets_with_a_reason(dgram, address, reason):
    with pytest.raises(PacketError, match=reason) as e:
        parse_packet(dgram)
    assert e.value.address == address


def test_deeply_nested_bundles_are_refused():
    dgram = osc("/x", 1)
    for _ in range(20):
        b = OscBundleBuilder(0)
        b.add_content(OscBundle(dgram) if dgram.startswith(b"#bundle") else OscMessage(dgram))
        dgram = b.build().dgram
    with pytest.raises(PacketError, match="nested deeper"):
        parse_packet(dgram)
