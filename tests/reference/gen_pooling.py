#!/usr/bin/env python3
"""Golden values for ops/pooling.hpp from torch.nn.functional.{max,avg,adaptive_avg}_pool2d.

Each case <k> stores <k>.x, <k>.y, <k>.dy (random) and <k>.dx (autograd). Max and avg cases
also store <k>.params = int32 [kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad]; max
cases store <k>.argmax (int32, flat index into the input plane, from return_indices=True).
Adaptive cases take their output size from <k>.y's shape.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

# name, input shape, kernel, stride, padding, ceil_mode, count_include_pad
POOL_CASES = [
    ("k2s2", (2, 3, 8, 10), (2, 2), (2, 2), (0, 0), False, True),
    ("k3s2p1", (2, 2, 9, 11), (3, 3), (2, 2), (1, 1), False, True),
    ("k3s1", (1, 2, 7, 6), (3, 3), (1, 1), (0, 0), False, True),
    ("k2x3s1x2p1", (1, 3, 7, 9), (2, 3), (1, 2), (1, 1), False, True),
    ("ceil_k2s2", (2, 2, 7, 9), (2, 2), (2, 2), (0, 0), True, True),
    ("ceil_k3s2p1", (1, 2, 10, 8), (3, 3), (2, 2), (1, 1), True, True),
    ("ceil_drop_k2s2p1", (1, 2, 5, 7), (2, 2), (2, 2), (1, 1), True, True),
    ("excl_k3s2p1", (2, 2, 9, 7), (3, 3), (2, 2), (1, 1), False, False),
    ("ceil_excl_k3x2s2x3p1", (1, 3, 8, 11), (3, 2), (2, 3), (1, 1), True, False),
    ("ceil_k4s3p2", (1, 2, 10, 9), (4, 4), (3, 3), (2, 2), True, True),
]
# name, input shape, output size
ADAPTIVE_CASES = [
    ("down", (2, 3, 13, 11), (6, 3)),
    ("uneven", (1, 2, 7, 5), (3, 2)),
    ("up", (1, 2, 5, 5), (7, 9)),
    ("global", (2, 2, 6, 4), (1, 1)),
    ("psp", (1, 2, 17, 17), (6, 6)),
]


def main():
    seeded(7)
    out = {}
    for name, shape, kernel, stride, pad, ceil_mode, include_pad in POOL_CASES:
        params = torch.tensor([*kernel, *stride, *pad, int(ceil_mode), int(include_pad)],
                              dtype=torch.int32)
        for kind in ("max", "avg"):
            key = f"{kind}_{name}"
            x = torch.randn(shape).requires_grad_(True)
            if kind == "max":
                y, argmax = F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode,
                                         return_indices=True)
                out[f"{key}.argmax"] = argmax.to(torch.int32)
            else:
                y = F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode,
                                 count_include_pad=include_pad)
            dy = torch.randn(y.shape)
            y.backward(dy)
            out.update({f"{key}.x": x.detach(), f"{key}.params": params, f"{key}.y": y.detach(),
                        f"{key}.dy": dy, f"{key}.dx": x.grad})
    for name, shape, size in ADAPTIVE_CASES:
        key = f"adaptive_{name}"
        x = torch.randn(shape).requires_grad_(True)
        y = F.adaptive_avg_pool2d(x, size)
        dy = torch.randn(y.shape)
        y.backward(dy)
        out.update({f"{key}.x": x.detach(), f"{key}.y": y.detach(), f"{key}.dy": dy,
                    f"{key}.dx": x.grad})
    cases = [f"{kind}_{c[0]}" for c in POOL_CASES for kind in ("max", "avg")]
    cases += [f"adaptive_{c[0]}" for c in ADAPTIVE_CASES]
    write_safetensors(golden_path("pooling"), out,
                      {"generator": "tests/reference/gen_pooling.py", "torch": torch.__version__,
                       "cases": ",".join(cases)})


if __name__ == "__main__":
    main()
