#!/usr/bin/env python3
"""Golden values for ops/pyramid_sampling.hpp: PyramidSampling as ANL / SaF write it,
torch.cat([F.adaptive_avg_pool2d(x, n).flatten(2) for n in sizes], 2).

Each case <k> stores <k>.x, <k>.sizes (int32), <k>.y ([N, C, S]), <k>.dy (random) and
<k>.dx (autograd).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

# name, input shape, sizes
CASES = [
    ("anl_16x16", (2, 3, 16, 16), (1, 3, 6, 8)),
    ("anl_odd_13x11", (1, 2, 13, 11), (1, 3, 6, 8)),
    ("small_7x5", (1, 1, 7, 5), (1, 3, 6, 8)),   # n > H and n > W: overlapping bins
    ("global_only", (2, 2, 5, 6), (1,)),
    ("reordered", (1, 2, 9, 10), (4, 2, 9)),
]


def pyramid_sampling(x, sizes):
    return torch.cat([F.adaptive_avg_pool2d(x, n).flatten(2) for n in sizes], 2)


def main():
    seeded(11)
    out = {}
    for name, shape, sizes in CASES:
        x = torch.randn(shape).requires_grad_(True)
        y = pyramid_sampling(x, sizes)
        dy = torch.randn(y.shape)
        y.backward(dy)
        out.update({f"{name}.x": x.detach(), f"{name}.sizes": torch.tensor(sizes, dtype=torch.int32),
                    f"{name}.y": y.detach(), f"{name}.dy": dy, f"{name}.dx": x.grad})
    write_safetensors(golden_path("pyramid_sampling"), out,
                      {"generator": "tests/reference/gen_pyramid_sampling.py",
                       "torch": torch.__version__, "cases": ",".join(c[0] for c in CASES)})


if __name__ == "__main__":
    main()
