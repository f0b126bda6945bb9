#!/usr/bin/env python3
"""Golden values for ops/softmax.hpp: softmax and log_softmax over axes 1 and -1 of a
[2, 5, 3, 4] input (scaled so rows have a wide range), with input gradients for a random dy.
Writes tests/golden/softmax.safetensors."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402


def main():
    gen = seeded(20240601)
    x = torch.randn(2, 5, 3, 4, generator=gen) * 4.0 + 10.0  # large offsets: stability matters
    dy = torch.randn(2, 5, 3, 4, generator=gen)
    out = {"x": x, "dy": dy}
    for axis, tag in ((1, "axis1"), (-1, "axis_last")):
        for name, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
            xi = x.clone().requires_grad_(True)
            y = fn(xi, dim=axis)
            (y * dy).sum().backward()
            out[f"{name}_{tag}_y"] = y.detach()
            out[f"{name}_{tag}_dx"] = xi.grad.detach()
    write_safetensors(golden_path("softmax"), out,
                      {"generator": "tests/reference/gen_softmax.py", "torch": torch.__version__})


if __name__ == "__main__":
    main()
