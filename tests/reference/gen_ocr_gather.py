#!/usr/bin/env python3
"""Golden values for ops/ocr_gather.hpp: the math of the OCR authors' SpatialGather_Module,
    probs = F.softmax(probs.view(N, K, -1), dim=2)
    ctx = torch.matmul(probs, feats.view(N, C, -1).permute(0, 2, 1))   # [N, K, C]
(the module then returns ctx.permute(0, 2, 1).unsqueeze(3), [N, C, K, 1]; segkit's op returns
ctx itself). Each case <k> stores <k>.regions ([N, K, H, W]), <k>.features ([N, C, H, W]),
<k>.y ([N, K, C]), <k>.dy (random) and the autograd gradients <k>.d_regions, <k>.d_features.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

# name, N, K, C, H, W
CASES = [
    ("cityscapes_like", 2, 19, 8, 6, 7),
    ("one_region", 1, 1, 5, 4, 3),
    ("one_channel", 2, 3, 1, 5, 5),
    ("wide_logits", 1, 4, 6, 9, 8),  # logits scaled by 20: the softmax must subtract the max
]


def main():
    seeded(13)
    out = {}
    for name, n, k, c, h, w in CASES:
        scale = 20.0 if name == "wide_logits" else 2.0
        regions = (scale * torch.randn(n, k, h, w)).requires_grad_(True)
        features = torch.randn(n, c, h, w).requires_grad_(True)
        probs = F.softmax(regions.view(n, k, -1), dim=2)
        ctx = torch.matmul(probs, features.view(n, c, -1).permute(0, 2, 1))
        dy = torch.randn(ctx.shape)
        ctx.backward(dy)
        out.update({f"{name}.regions": regions.detach(), f"{name}.features": features.detach(),
                    f"{name}.y": ctx.detach(), f"{name}.dy": dy,
                    f"{name}.d_regions": regions.grad, f"{name}.d_features": features.grad})
    write_safetensors(golden_path("ocr_gather"), out,
                      {"generator": "tests/reference/gen_ocr_gather.py", "torch": torch.__version__,
                       "cases": ",".join(c[0] for c in CASES)})


if __name__ == "__main__":
    main()
