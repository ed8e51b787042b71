#!/usr/bin/env python3
"""Writes the hand-made seed inputs under fuzz/seeds/<target>/ (run from anywhere).

Each seed is a small valid input in the target's own input format (see the doc comment at the
top of each fuzz_targets/<target>.rs), so that the fuzzer starts from well-formed frames and
batches instead of having to discover Kafka's framing and CRC-32C from nothing.
"""
import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def varint(value):
    zigzag = (value << 1) ^ (value >> 63)
    out = b""
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def record(offset_delta, key, value):
    body = b"\x00" + varint(0) + varint(offset_delta)
    body += varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(0)
    return varint(len(body)) + body


def batch(base_offset, records, codec=0):
    section = b"".join(record(i, k, v) for i, (k, v) in enumerate(records))
    if codec == 1:
        section = gzip.compress(section)
    after_crc = struct.pack(">hiqqqhii", codec, len(records) - 1, 1000, 1000, -1, -1, -1, len(records))
    after_crc += section
    length = 4 + 1 + 4 + len(after_crc)
    head = struct.pack(">qiib", base_offset, length, -1, 2)
    return head + struct.pack(">I", crc32c(after_crc)) + after_crc


def string(text):
    return struct.pack(">h", len(text)) + text


def nbytes(data):
    return struct.pack(">i", -1) if data is None else struct.pack(">i", len(data)) + data


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as out:
        out.write(data)


two = batch(0, [(b"k1", b"v1"), (b"k2", None)])
zipped = batch(0, [(b"k1", b"v1"), (b"k1", b"v2")], codec=1)

write("record_batch", "two_records", b"\x07" + two)
write("record_batch", "gzip", b"\x07" + zipped)
write("record_batch", "two_batches", b"\x07" + two + batch(2, [(b"k3", b"v3")]))

first, second = batch(0, [(b"a", b"1"), (b"b", b"2")]), batch(2, [(b"a", None)])
write("log_recovery", "one_segment", b"\x0f\x00" + first + second)
write("log_recovery", "two_segments", b"\x0f\x01" + struct.pack(">H", len(first)) + first + second)

# Client answers: [selector, version byte, fetch offset, frame]; frame = correlation id + body.
fetch_v4 = struct.pack(">ii", 0, 1) + string(b"t") + struct.pack(">iihqqi", 1, 0, 0, 3, 3, -1) + nbytes(two)
write("client_response", "fetch_v4", bytes([1, 0, 0]) + struct.pack(">i", 1) + fetch_v4)
subscription = struct.pack(">hi", 0, 1) + string(b"t") + nbytes(None)
join_v0 = struct.pack(">hi", 0, 1) + string(b"range") + string(b"m") + string(b"m")
join_v0 += struct.pack(">i", 1) + string(b"m") + nbytes(subscription)
write("client_response", "join_group_v0", bytes([7, 0, 0]) + struct.pack(">i", 1) + join_v0)
assignment = struct.pack(">hi", 0, 1) + string(b"t") + struct.pack(">ii", 1, 0) + nbytes(None)
write("client_response", "sync_group_v0", bytes([10, 0, 0]) + struct.pack(">i", 1) + struct.pack(">h", 0) + nbytes(assignment))

# Broker requests: [selector, version byte, body]; selector bit 6: the harness writes the header.
produce_v3 = nbytes(None)[:0] + struct.pack(">h", -1) + struct.pack(">hii", 1, 1000, 1) + string(b"t")
produce_v3 += struct.pack(">ii", 1, 0) + nbytes(two)
write("request_frame", "produce_v3", bytes([0x40, 0]) + produce_v3)
write("request_frame", "metadata_v0", bytes([0x43, 0]) + struct.pack(">i", 1) + string(b"t"))
