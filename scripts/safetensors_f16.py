#!/usr/bin/env python3
"""Rewrite a safetensors file with its F32 tensors as F16 (IEEE half, round to nearest even: numpy's
astype), every other tensor and the metadata as they are: how artifacts/ ships trained weights at half the
bytes (artifacts/README.md). The readers of specdec (EAGLE and Medusa weights) take F16 tensors as they are.
F32 values beyond F16's range are an error naming the tensor (nothing is written).

    .venv/bin/python scripts/safetensors_f16.py IN.safetensors OUT.safetensors
"""
from __future__ import annotations

import json
import os
import struct
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        sys.exit(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        sys.exit(f"{path}: header of {n} bytes, the file has {len(raw) - 8} after its length")
    header = json.loads(raw[8:8 + n])
    return header, memoryview(raw)[8 + n:]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    src, dst = argv
    header, data = read(src)
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset = {}, [], 0
    for name in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        t = header[name]
        begin, end = t["data_offsets"]
        blob = bytes(data[begin:end])
        dtype = t["dtype"]
        if dtype == "F32":
            x = np.frombuffer(blob, dtype="<f4")
            if np.any(np.abs(x) > np.finfo(np.float16).max):
                sys.exit(f"{src}: tensor '{name}' has values beyond F16's range ({np.abs(x).max():g})")
            blob, dtype = x.astype("<f2").tobytes(), "F16"
        out_header[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    if meta is not None:
        out_header = {"__metadata__": meta, **out_header}
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for c in chunks:
            f.write(c)
    os.replace(tmp, dst)
    print(f"{dst}: {offset} bytes of tensors ({os.path.getsize(src)} -> {os.path.getsize(dst)} bytes in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
