#!/usr/bin/env python3
"""Golden values for train/losses.hpp, from PyTorch:
  - F.cross_entropy with weight and ignore_index (mean and sum), NCHW and [N, C];
  - F.binary_cross_entropy_with_logits on the non-ignored elements (mean);
  - OHEM cross-entropy exactly as HRNet-Semantic-Segmentation's OhemCrossEntropy computes it
    (ohem_hrnet below), for a threshold set by thresh and one set by p[min_kept].
Each case stores the loss and dlogits for upstream gradient 1.
Writes tests/golden/losses.safetensors."""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, seeded, write_safetensors  # noqa: E402

IGNORE = 255


def labels(shape, classes, ignore_fraction, gen):
    y = torch.randint(0, classes, shape, generator=gen)
    mask = torch.rand(shape, generator=gen) < ignore_fraction
    y[mask] = IGNORE
    return y


def ohem_hrnet(score, target, thresh, min_kept, weight):
    """HRNet's OhemCrossEntropy._ohem_forward (score already at the target's size)."""
    min_kept = max(1, min_kept)
    criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE, reduction='none')
    pred = F.softmax(score, dim=1)
    pixel_losses = criterion(score, target).contiguous().view(-1)
    mask = target.contiguous().view(-1) != IGNORE
    tmp_target = target.clone()
    tmp_target[tmp_target == IGNORE] = 0
    pred = pred.gather(1, tmp_target.unsqueeze(1))
    pred, ind = pred.contiguous().view(-1,)[mask].contiguous().sort()
    min_value = pred[min(min_kept, pred.numel() - 1)]
    threshold = max(min_value, thresh)
    pixel_losses = pixel_losses[mask][ind]
    pixel_losses = pixel_losses[pred < threshold]
    return pixel_losses.mean(), int((pred < threshold).sum()), float(threshold)


def with_grad(x, fn):
    x = x.clone().requires_grad_(True)
    result = fn(x)
    loss = result[0] if isinstance(result, tuple) else result
    loss.backward()
    return loss.detach().reshape(1), x.grad.detach(), result


def main():
    gen = seeded(20240603)
    out = {}
    # cross-entropy, NCHW
    x = torch.randn(2, 5, 6, 7, generator=gen) * 3.0
    y = labels((2, 6, 7), 5, 0.2, gen)
    w = torch.rand(5, generator=gen) * 2.0 + 0.2
    out.update(ce_x=x, ce_y=y.int(), ce_w=w)
    for tag, kwargs in (("mean", {}), ("weighted_mean", {"weight": w}),
                        ("weighted_sum", {"weight": w, "reduction": "sum"})):
        loss, dx, _ = with_grad(x, lambda t: F.cross_entropy(t, y, ignore_index=IGNORE, **kwargs))
        out[f"ce_{tag}_loss"], out[f"ce_{tag}_dx"] = loss, dx
    # cross-entropy, [N, C] with labels [N]
    x2 = torch.randn(9, 4, generator=gen) * 2.0
    y2 = labels((9,), 4, 0.2, gen)
    w2 = torch.rand(4, generator=gen) + 0.5
    loss, dx, _ = with_grad(x2, lambda t: F.cross_entropy(t, y2, weight=w2, ignore_index=IGNORE))
    out.update(ce2d_x=x2, ce2d_y=y2.int(), ce2d_w=w2, ce2d_loss=loss, ce2d_dx=dx)
    # BCE with logits over the non-ignored elements
    b = torch.randn(2, 1, 6, 7, generator=gen) * 4.0
    t = labels((2, 6, 7), 2, 0.25, gen)
    mask = t != IGNORE
    loss, dx, _ = with_grad(b, lambda s: F.binary_cross_entropy_with_logits(
        s[:, 0][mask], t[mask].float()))
    out.update(bce_x=b, bce_t=t.int(), bce_loss=loss, bce_dx=dx)
    # OHEM, HRNet's code
    xo = torch.randn(2, 5, 12, 13, generator=gen) * 2.0
    yo = labels((2, 12, 13), 5, 0.1, gen)
    wo = torch.rand(5, generator=gen) * 2.0 + 0.2
    out.update(ohem_x=xo, ohem_y=yo.int(), ohem_w=wo)
    meta = {"generator": "tests/reference/gen_losses.py", "torch": torch.__version__}
    for tag, thresh, min_kept, weight in (("thresh", 0.7, 20, None), ("rank", 0.1, 150, None),
                                          ("rank_weighted", 0.1, 150, wo),
                                          ("thresh_weighted", 0.7, 20, wo)):
        loss, dx, (_, kept, threshold) = with_grad(
            xo, lambda s: ohem_hrnet(s, yo, thresh, min_kept, weight))
        out[f"ohem_{tag}_loss"], out[f"ohem_{tag}_dx"] = loss, dx
        out[f"ohem_{tag}_kept"] = torch.tensor([kept], dtype=torch.int32)
        out[f"ohem_{tag}_threshold"] = torch.tensor([threshold], dtype=torch.float32)
        meta[f"ohem_{tag}"] = f"thresh={thresh} min_kept={min_kept} weighted={weight is not None}"
    write_safetensors(golden_path("losses"), out, meta)


if __name__ == "__main__":
    main()
