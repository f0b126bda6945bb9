#!/usr/bin/env python3
"""Golden values for ops/resize.hpp from torch.nn.functional.interpolate with an explicit size.

For each case <k> it stores: <k>.x (input), <k>.params = int32 [mode, align_corners] with mode
0 = nearest, 1 = bilinear, <k>.y (output; its H and W are the requested size), <k>.dy (random)
and <k>.dx = d<y, dy>/dx from autograd.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

SIZES = [
    # input shape, output (H, W)
    ((2, 3, 4, 5), (8, 10)),    # exact x2 up
    ((1, 2, 7, 5), (12, 9)),    # non-integer up (7 -> 12)
    ((2, 1, 12, 10), (5, 4)),   # non-integer down (12 -> 5)
    ((1, 1, 6, 3), (1, 1)),     # 1x1 output
    ((1, 2, 1, 4), (3, 7)),     # from a single row
]
MODES = [("nearest", 0, None), ("bilinear", 1, False), ("bilinear", 1, True)]


def main():
    seeded(7)
    out = {}
    k = 0
    for mode, code, corners in MODES:
        for in_shape, size in SIZES:
            x = torch.randn(in_shape).requires_grad_(True)
            y = F.interpolate(x, size=size, mode=mode, align_corners=corners)
            dy = torch.randn(y.shape)
            (dx,) = torch.autograd.grad(y, x, dy)
            out[f"{k}.x"] = x.detach()
            out[f"{k}.params"] = torch.tensor([code, int(bool(corners))], dtype=torch.int32)
            out[f"{k}.y"] = y.detach()
            out[f"{k}.dy"] = dy
            out[f"{k}.dx"] = dx
            k += 1
    path = golden_path("resize")
    write_safetensors(path, out, metadata={"generator": "tests/reference/gen_resize.py",
                                           "torch": torch.__version__, "cases": str(k)})
    print("wrote", path, os.path.getsize(path), "bytes,", k, "cases")


if __name__ == "__main__":
    main()
