#!/usr/bin/env python3
"""Golden values for ops/batch_norm.hpp from torch.nn.functional.batch_norm (= nn.BatchNorm2d).

For each case <k> it stores: <k>.x, <k>.gamma, <k>.beta, <k>.running_mean / <k>.running_var
(before the step), <k>.params = [eps, momentum, training], <k>.y, <k>.running_mean_after /
<k>.running_var_after (after one forward), <k>.dy (random) and the gradients <k>.dx,
<k>.dgamma, <k>.dbeta. In eval mode gradients are those of the affine map with the running
statistics held constant, as autograd gives them.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

CASES = [
    # name, shape, training, eps, momentum, input offset
    ("train", (2, 3, 5, 7), True, 1e-5, 0.1, 0.0),
    ("train_n1_odd", (1, 2, 3, 5), True, 1e-5, 0.1, 0.0),
    ("train_c1_momentum", (4, 1, 3, 3), True, 1e-3, 0.3, 0.0),
    ("train_offset", (2, 2, 16, 16), True, 1e-5, 0.1, 50.0),
    ("eval", (2, 3, 5, 7), False, 1e-5, 0.1, 0.0),
    ("eval_n1", (1, 2, 3, 5), False, 1e-4, 0.1, 0.0),
]


def main():
    seeded(2024)
    out = {}
    for name, shape, training, eps, momentum, offset in CASES:
        c = shape[1]
        x = (torch.randn(shape) * 1.5 + offset).requires_grad_(True)
        gamma = (torch.rand(c) + 0.5).requires_grad_(True)
        beta = torch.randn(c).requires_grad_(True)
        running_mean = torch.randn(c) * 0.5
        running_var = torch.rand(c) + 0.5
        rm, rv = running_mean.clone(), running_var.clone()
        y = torch.nn.functional.batch_norm(x, rm, rv, gamma, beta, training=training,
                                           momentum=momentum, eps=eps)
        dy = torch.randn(shape)
        y.backward(dy)
        out.update({
            f"{name}.x": x.detach(), f"{name}.gamma": gamma.detach(), f"{name}.beta": beta.detach(),
            f"{name}.running_mean": running_mean, f"{name}.running_var": running_var,
            f"{name}.params": torch.tensor([eps, momentum, 1.0 if training else 0.0],
                                           dtype=torch.float32),
            f"{name}.y": y.detach(), f"{name}.running_mean_after": rm,
            f"{name}.running_var_after": rv, f"{name}.dy": dy, f"{name}.dx": x.grad,
            f"{name}.dgamma": gamma.grad, f"{name}.dbeta": beta.grad,
        })
    write_safetensors(golden_path("batch_norm"), out,
                      {"generator": "tests/reference/gen_batch_norm.py",
                       "torch": torch.__version__,
                       "cases": ",".join(case[0] for case in CASES)})


if __name__ == "__main__":
    main()
