"""Writes the inputs of benches/memory.sh: the shapes of issue 13 whose peak memory used to grow
with the number and shape of things inside an input. The TensorProto and TFRecord bytes are
written by hand (the wire format is small and fixed here), so that no TensorFlow is needed;
the safetensors files by the safetensors library. Usage: memory_inputs.py OUT_DIR [SCALE]."""

import os
import struct
import sys

import numpy as np
from safetensors.numpy import save_file


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(no, payload):
    """A length-delimited field."""
    return varint(no << 3 | 2) + varint(len(payload)) + payload


def shape(dims):
    return field(2, b"".join(field(2, varint(1 << 3 | 0) + varint(d)) for d in dims))


def crc32c(data):
    poly, crc = 0x82F63B78, 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (poly if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def record(body):
    length = struct.pack("<Q", len(body))
    return length + struct.pack("<I", masked(length)) + body + struct.pack("<I", masked(body))


def main():
    out, scale = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)

    # 1,000,000 scalar float32 records, as tf.io.serialize_tensor(tf.constant(1.0)) writes them.
    n = int(1_000_000 * scale)
    scalar = b"\x08\x01" + b"\x12\x00" + field(4, struct.pack("<f", 1.0))
    with open(p("scalars.tfrecord"), "wb") as f:
        f.write(record(scalar) * n)

    # 200,000 small tensors in one safetensors file (a ~13 MiB header).
    n = int(200_000 * scale)
    save_file({f"model.layers.{i:06d}.w": np.full([1], i, np.float32) for i in range(n)},
              p("many.safetensors"))

    # A TensorProto holding 1,000,000 (and 5,000,000) int32 values as unpacked int_val fields.
    for count, name in [(1_000_000, "unpacked1m.pb"), (5_000_000, "unpacked5m.pb")]:
        count = int(count * scale)
        with open(p(name), "wb") as f:
            f.write(b"\x08\x03" + shape([count]) + b"\x38\x01" * count)

    # A sparse group, 8M entries (every other element of a 4096 x 4096 float32 array), sorted.
    side = int(4096 * scale ** 0.5) // 2 * 2
    linear = np.arange(0, side * side, 2, dtype=np.int64)
    indices = np.stack([linear // side, linear % side], axis=1)
    save_file({
        "X/indices": indices,
        "X/values": (linear % 1000).astype(np.float32),
        "X/dense_shape": np.array([side, side], np.int64),
    }, p("sparse.safetensors"))

    # tf.io.serialize_sparse output whose values claim [2^28] floats from one float_val: the
    # indices hold one entry, so the components disagree and nothing must be decoded.
    indices = b"\x08\x09" + shape([1, 1]) + field(10, varint(0))
    values = b"\x08\x01" + shape([1 << 28]) + field(5, struct.pack("<f", 1.0))
    dense_shape = b"\x08\x09" + shape([1]) + field(10, varint(1 << 28))
    sparse = b"\x08\x07" + shape([3]) + b"".join(field(8, t) for t in [indices, values, dense_shape])
    with open(p("sparse_fill.pb"), "wb") as f:
        f.write(sparse)


if __name__ == "__main__":
    main()
