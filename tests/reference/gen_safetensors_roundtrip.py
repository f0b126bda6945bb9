#!/usr/bin/env python3
"""Writes tests/golden/safetensors_roundtrip.safetensors through golden.write_safetensors, so
segkit's reader is tested on a file it did not write. Every value follows a formula that
tests/test_safetensors.cpp recomputes; the metadata holds non-ASCII text, which json.dumps
escapes as \\uXXXX (a surrogate pair for the non-BMP character).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, read_safetensors, write_safetensors  # noqa: E402


def tensors():
    f32 = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) * 0.25 - 3.0  # exact in float
    i32 = torch.tensor([i * i * 1000 - 7 for i in range(5)], dtype=torch.int32)
    u8 = torch.tensor([(i * 37) % 256 for i in range(12)], dtype=torch.uint8).reshape(3, 4)
    i64 = torch.tensor([i * 1000000000000 - 5 for i in range(4)], dtype=torch.int64)
    f64 = torch.tensor([1.0 / (i + 1) for i in range(6)], dtype=torch.float64).reshape(2, 1, 3)
    scalar = torch.tensor(3.5, dtype=torch.float32)  # rank 0: segkit reads it as shape [1]
    empty = torch.zeros(0, 3, dtype=torch.float32)
    return {"a.f32": f32, "b.i32": i32, "c.u8": u8, "d.i64": i64, "e.f64": f64,
            "scalar": scalar, "empty": empty}


def main():
    path = golden_path("safetensors_roundtrip")
    data = tensors()
    write_safetensors(path, data, metadata={"format": "pt", "generator": "gen_safetensors_roundtrip.py",
                                            "text": "caf\u00e9 \u20ac \U0001D6FC \"q\"\\"})
    back = read_safetensors(path)
    for name, t in data.items():
        assert torch.equal(back[name], t), name
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
