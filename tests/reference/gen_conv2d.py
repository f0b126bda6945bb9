#!/usr/bin/env python3
"""Golden values for ops/conv2d.hpp from torch.nn.functional.conv2d (CPU, float32).

Each case <k> stores <k>.x, <k>.w, <k>.b (bias, or absent when the case has none), <k>.y,
a random <k>.dy, and autograd's <k>.dx, <k>.dw, <k>.db, plus
<k>.params = int32 [stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups].
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

# name, x shape, w shape, stride, padding, dilation, groups, bias
CASES = [
    ("3x3_pad1", (2, 3, 9, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ("3x3_stride2", (2, 4, 11, 10), (6, 4, 3, 3), (2, 2), (1, 1), (1, 1), 1, True),
    ("dilation2", (1, 3, 10, 9), (5, 3, 3, 3), (1, 1), (2, 2), (2, 2), 1, False),
    ("groups2_5x3", (2, 4, 9, 11), (6, 2, 5, 3), (1, 2), (2, 1), (1, 1), 2, True),
    ("depthwise", (2, 6, 8, 7), (6, 1, 3, 3), (1, 1), (1, 1), (1, 1), 6, True),
    ("depthwise_s2_d2", (1, 4, 13, 12), (4, 1, 3, 3), (2, 2), (2, 2), (2, 2), 4, False),
    ("pointwise", (2, 8, 5, 6), (5, 8, 1, 1), (1, 1), (0, 0), (1, 1), 1, True),
]


def main():
    seeded(11)
    out = {}
    for name, xs, ws, stride, pad, dil, groups, has_bias in CASES:
        x = torch.randn(xs).requires_grad_(True)
        w = (torch.randn(ws) * 0.5).requires_grad_(True)
        b = torch.randn(ws[0]).requires_grad_(True) if has_bias else None
        y = F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)
        dy = torch.randn(y.shape)
        y.backward(dy)
        out.update({f"{name}.x": x.detach(), f"{name}.w": w.detach(), f"{name}.y": y.detach(),
                    f"{name}.dy": dy, f"{name}.dx": x.grad, f"{name}.dw": w.grad,
                    f"{name}.params": torch.tensor([*stride, *pad, *dil, groups],
                                                   dtype=torch.int32)})
        if has_bias:
            out[f"{name}.b"] = b.detach()
            out[f"{name}.db"] = b.grad
    path = golden_path("conv2d")
    write_safetensors(path, out, {"generator": "tests/reference/gen_conv2d.py",
                                  "torch": torch.__version__})
    print("wrote", path, os.path.getsize(path), "bytes,", len(CASES), "cases")


if __name__ == "__main__":
    main()
