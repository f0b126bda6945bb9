#!/usr/bin/env python3
"""Golden values for ops/pyramid_fuse.hpp: SaF Eq. 2 written as a PyTorch user writes it.

Y = sum_l prod_{k<l} 1[Up(sigmoid(U_k)) < tau] * 1[Up(sigmoid(U_l)) >= tau] * Up(Y_l), U_L = 1,
with Up = F.interpolate(mode='nearest') to the finest size, labels = argmax over C, and the
level map the same sum with l (1-based) in place of Up(Y_l).
For each case <k>: <k>.levels = int32 [L], <k>.tau, <k>.semantic<l>, <k>.unity<l> (logits),
<k>.labels (int32 N x H x W), <k>.level (int32 N x H x W), <k>.logits (N x C x H x W).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

CASES = [
    # N, C, finest H, W, level shifts (coarse to fine), tau
    (2, 5, 8, 12, [1, 0], 0.5),
    (1, 4, 16, 8, [2, 1, 0], 0.5),
    (2, 3, 16, 16, [3, 2, 1, 0], 0.6),
    (1, 6, 32, 16, [4, 3, 2, 1, 0], 0.4),
    (2, 1, 8, 8, [3, 1, 0], 0.5),
]


def eq2(semantic, unity, tau):
    size = semantic[-1].shape[-2:]
    up = [F.interpolate(y, size=size, mode="nearest") for y in semantic]
    conf = [(torch.sigmoid(F.interpolate(u, size=size, mode="nearest")) >= tau).float()
            for u in unity]
    conf.append(torch.ones_like(conf[0]))
    fused = torch.zeros_like(up[-1])
    level = torch.zeros_like(conf[0])
    still = torch.ones_like(conf[0])
    for l, (y, c) in enumerate(zip(up, conf)):
        fused = fused + still * c * y
        level = level + still * c * (l + 1)
        still = still * (1 - c)
    return fused.argmax(dim=1), fused, level[:, 0]


def main():
    seeded(11)
    out = {}
    for k, (n, c, h, w, shifts, tau) in enumerate(CASES):
        semantic = [torch.randn(n, c, h >> s, w >> s) * 2 for s in shifts]
        unity = [torch.randn(n, 1, h >> s, w >> s) * 2 for s in shifts[:-1]]
        unity[0].view(-1)[::5] = 0.0  # sigmoid(0) = 0.5: on the boundary when tau = 0.5
        labels, logits, level = eq2(semantic, unity, tau)
        out[f"{k}.levels"] = torch.tensor([len(shifts)], dtype=torch.int32)
        out[f"{k}.tau"] = torch.tensor([tau], dtype=torch.float32)
        for l, y in enumerate(semantic):
            out[f"{k}.semantic{l}"] = y
        for l, u in enumerate(unity):
            out[f"{k}.unity{l}"] = u
        out[f"{k}.labels"] = labels.to(torch.int32)
        out[f"{k}.level"] = level.to(torch.int32)
        out[f"{k}.logits"] = logits
    path = golden_path("pyramid_fuse")
    write_safetensors(path, out, metadata={"generator": "tests/reference/gen_pyramid_fuse.py",
                                           "torch": torch.__version__, "cases": str(len(CASES))})
    print("wrote", path, os.path.getsize(path), "bytes,", len(CASES), "cases")


if __name__ == "__main__":
    main()
