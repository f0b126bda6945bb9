#!/usr/bin/env python3
"""Golden values for ops/pyramid_ground_truth.hpp, computed with PyTorch pooling ops.

For a cell of s x s pixels: max and min of the non-ignore labels by max_pool2d (ignore masked
to -big, and to +big for the min via -max_pool2d(-x)), has_ignore by max_pool2d of the mask:
  mixed (max != min)            -> U = 0, Y = ignore
  one class, no ignore          -> U = 1, Y = the class
  otherwise (class + ignore, only ignore) -> U = ignore, Y = ignore
Y(L) = F.interpolate(labels, size, mode='nearest'). Re-labeling for l >= 2: a cell becomes
ignore in Y(l), U(l) when F.interpolate(nearest) of any coarser level's (U == 1) [and
sigmoid(predicted) >= tau for the TP variant] is set at it.
For each case <k>: <k>.params = int32 [L, s_L, ignore], <k>.tau, <k>.labels (int32 N x H x W),
<k>.predicted<l> (unity logits N x 1 x h x w, l < L-1), <k>.<raw|gt|tp>.Y<l>, .U<l>.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

IGNORE = 255
BIG = 1e6
CASES = [
    # N, H, W, L, s_L, tau, classes, region size
    (2, 16, 24, 3, 2, 0.5, 3, 3),
    (1, 32, 32, 4, 2, 0.5, 4, 5),
    (2, 32, 16, 2, 4, 0.6, 2, 2),
    (1, 48, 72, 4, 3, 0.4, 5, 7),
]


def blocky_labels(n, h, w, classes, region):
    coarse = torch.randint(0, classes, (n, 1, h // region + 1, w // region + 1)).float()
    coarse[torch.rand(coarse.shape) < 0.08] = IGNORE
    labels = F.interpolate(coarse, scale_factor=region, mode="nearest")[:, :, :h, :w]
    labels[torch.rand(labels.shape) < 0.02] = IGNORE
    return labels[:, 0].to(torch.int64)


def ground_truth(labels, levels, finest_stride):
    x = labels[:, None].float()
    valid = labels[:, None] != IGNORE
    ys, us = [], []
    for l in range(levels):
        s = finest_stride * 2 ** (levels - 1 - l)
        size = (labels.shape[1] // s, labels.shape[2] // s)
        if l == levels - 1:
            ys.append(F.interpolate(x, size=size, mode="nearest")[:, 0].to(torch.int32))
            break
        high = F.max_pool2d(torch.where(valid, x, torch.full_like(x, -BIG)), s)
        low = -F.max_pool2d(torch.where(valid, -x, torch.full_like(x, -BIG)), s)
        any_ignore = F.max_pool2d((~valid).float(), s) > 0
        any_class = high > -BIG
        mixed = any_class & (high != low)
        unit = any_class & (high == low) & ~any_ignore
        u = torch.full_like(high, IGNORE)
        u[mixed] = 0
        u[unit] = 1
        y = torch.full_like(high, IGNORE)
        y[unit] = high[unit]
        ys.append(y[:, 0].to(torch.int32))
        us.append(u[:, 0].to(torch.int32))
    return ys, us


def relabel(ys, us, predicted, tau, variant):
    ys, us = [y.clone() for y in ys], [u.clone() for u in us]
    if variant == "raw":
        return ys, us
    originals = [u.clone() for u in us]
    for l in range(1, len(ys)):
        size = ys[l].shape[-2:]
        done = torch.zeros(ys[l].shape, dtype=torch.bool)
        for k in range(l):
            flag = originals[k] == 1
            if variant == "tp":
                flag = flag & (torch.sigmoid(predicted[k][:, 0]) >= tau)
            done |= F.interpolate(flag[:, None].float(), size=size, mode="nearest")[:, 0] > 0
        ys[l][done] = IGNORE
        if l < len(us):
            us[l][done] = IGNORE
    return ys, us


def main():
    seeded(5)
    out = {}
    for k, (n, h, w, levels, stride, tau, classes, region) in enumerate(CASES):
        labels = blocky_labels(n, h, w, classes, region)
        ys, us = ground_truth(labels, levels, stride)
        predicted = [torch.randn(n, 1, *u.shape[-2:]) * 2 for u in us]
        out[f"{k}.params"] = torch.tensor([levels, stride, IGNORE], dtype=torch.int32)
        out[f"{k}.tau"] = torch.tensor([tau], dtype=torch.float32)
        out[f"{k}.labels"] = labels.to(torch.int32)
        for l, p in enumerate(predicted):
            out[f"{k}.predicted{l}"] = p
        for variant in ("raw", "gt", "tp"):
            ry, ru = relabel(ys, us, predicted, tau, variant)
            for l, y in enumerate(ry):
                out[f"{k}.{variant}.Y{l}"] = y
            for l, u in enumerate(ru):
                out[f"{k}.{variant}.U{l}"] = u
    path = golden_path("pyramid_ground_truth")
    write_safetensors(path, out, metadata={"generator": "tests/reference/gen_pyramid_ground_truth.py",
                                           "torch": torch.__version__, "cases": str(len(CASES))})
    print("wrote", path, os.path.getsize(path), "bytes,", len(CASES), "cases")


if __name__ == "__main__":
    main()
