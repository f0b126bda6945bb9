"""Golden values for tests/test_ocr.cpp: a float64 PyTorch re-implementation of the OCR head
(mmseg's OCRNet cascade: FCN-like aux head = soft object regions, OCRHead with
SpatialGatherModule + ObjectAttentionBlock) and its loss (HRNet's OhemCrossEntropy on the
bilinearly resized logits + 0.4 x CE on the resized aux logits).

Two cases, each under a prefix:
  ocr.*       the OCR head, K = 3 classes;
  baseline.*  the plain head without the object-context block, K = 4 classes (K is runtime in
              segkit, so one compiled head type serves both).
Per case: the parameters (float32; the C++ test loads them by name), the inputs (aux features,
features, labels), the logits and aux logits (training mode: batch statistics), the two loss
terms, every parameter gradient and both feature gradients of total = main + 0.4 aux.
Dropout is OFF on both sides (the C++ head's set_dropout(false)); batch norm trains.
State-dict names are mmseg's OCRNet decode_head names (decode_head.0 = aux, decode_head.1 = OCR).
Run with /usr/bin/python3 (Debian's python3-torch).
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, write_safetensors  # noqa: E402

AUX_IN, IN, CH, KEY, AUX_CH = 6, 7, 8, 4, 5
N, H, W, SCALE = 2, 6, 5, 2
OHEM_THRESH = 0.3


def conv_module(cin, cout, k):
    """mmcv ConvModule(conv no bias, BN, ReLU): names conv.*, bn.*"""
    m = nn.Module()
    m.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
    m.bn = nn.BatchNorm2d(cout)
    m.forward = lambda x: F.relu(m.bn(m.conv(x)))
    return m




class AuxHead(nn.Module):  # decode_head.0
    def __init__(self, k):
        super().__init__()
        self.convs = nn.Sequential(conv_module(AUX_IN, AUX_CH, 3))
        self.conv_seg = nn.Conv2d(AUX_CH, k, 1)

    def forward(self, x):
        return self.conv_seg(self.convs(x))


class ObjectAttentionBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.key_project = nn.Sequential(conv_module(CH, KEY, 1), conv_module(KEY, KEY, 1))
        self.query_project = nn.Sequential(conv_module(CH, KEY, 1), conv_module(KEY, KEY, 1))
        self.value_project = conv_module(CH, KEY, 1)
        self.out_project = conv_module(KEY, CH, 1)
        self.bottleneck = conv_module(2 * CH, CH, 1)

    def forward(self, feats, proxy):  # feats [N, C, h, w], proxy [N, C, K, 1]
        n = feats.size(0)
        q = self.query_project(feats).reshape(n, KEY, -1).permute(0, 2, 1)  # [N, hw, d]
        k = self.key_project(proxy).reshape(n, KEY, -1)  # [N, d, K]
        v = self.value_project(proxy).reshape(n, KEY, -1).permute(0, 2, 1)  # [N, K, d]
        sim = torch.softmax(KEY ** -0.5 * torch.matmul(q, k), dim=-1)
        ctx = torch.matmul(sim, v).permute(0, 2, 1).reshape(n, KEY, *feats.shape[2:])
        ctx = self.out_project(ctx)
        return self.bottleneck(torch.cat([ctx, feats], dim=1))


class OCRHead(nn.Module):  # decode_head.1
    def __init__(self, k, object_context):
        super().__init__()
        self.bottleneck = conv_module(IN, CH, 3)
        if object_context:
            self.object_context_block = ObjectAttentionBlock()
        self.object_context = object_context
        self.conv_seg = nn.Conv2d(CH, k, 1)

    def forward(self, x, regions):
        feats = self.bottleneck(x)
        if self.object_context:
            n, kk = regions.shape[:2]
            probs = torch.softmax(regions.reshape(n, kk, -1), dim=2)  # SpatialGatherModule
            proxy = torch.matmul(probs, feats.reshape(n, CH, -1).permute(0, 2, 1))  # [N, K, C]
            proxy = proxy.permute(0, 2, 1).unsqueeze(3)
            feats = self.object_context_block(feats, proxy)
        return self.conv_seg(feats)  # dropout off


class Head(nn.Module):
    def __init__(self, k, object_context):
        super().__init__()
        self.decode_head = nn.ModuleList([AuxHead(k), OCRHead(k, object_context)])

    def forward(self, aux_x, x):
        regions = self.decode_head[0](aux_x)
        return self.decode_head[1](x, regions), regions


def ohem_ce(score, target, min_kept, ignore=255):
    """HRNet's OhemCrossEntropy (score already at the label size)."""
    pred = F.softmax(score, dim=1)
    pixel_losses = F.cross_entropy(score, target, ignore_index=ignore, reduction="none").view(-1)
    mask = target.view(-1) != ignore
    tmp = target.clone()
    tmp[tmp == ignore] = 0
    pred = pred.gather(1, tmp.unsqueeze(1)).view(-1)[mask]
    pred, ind = pred.sort()
    min_value = pred[min(max(1, min_kept), pred.numel() - 1)]
    threshold = max(min_value.item(), OHEM_THRESH)
    kept = pred < threshold
    # float32 (C++) and float64 must agree on every comparison with the threshold
    gaps = (pred - threshold).abs()
    gaps = gaps[gaps > 0]
    assert gaps.min().item() > 1e-5, gaps.min().item()
    print(f"  ohem: valid {pred.numel()}, threshold {threshold:.4f}, kept {int(kept.sum())}, "
          f"nearest gap {gaps.min().item():.2e}")
    assert int(kept.sum()) < pred.numel(), "OHEM selection not exercised"
    return pixel_losses[mask][ind][kept].mean()


def make_case(prefix, k, object_context, min_kept, gen, out):
    head = Head(k, object_context)
    for name, p in head.named_parameters():
        if name.endswith("bn.weight"):
            v = 0.5 + torch.rand(p.shape, generator=gen)
        elif name.endswith("bn.bias"):
            v = 0.4 * torch.rand(p.shape, generator=gen) - 0.2
        elif name.endswith("conv_seg.bias"):
            v = 0.2 * torch.rand(p.shape, generator=gen) - 0.1
        else:
            fan_in = p[0].numel()
            gain = 4.0 if "conv_seg" in name else 1.7
            v = gain * (2 * torch.rand(p.shape, generator=gen) - 1) / fan_in ** 0.5
        with torch.no_grad():
            p.copy_(v.float().double())
        out[f"{prefix}.param.{name}"] = v.float()
    head.double().train()
    aux_x = torch.randn(N, AUX_IN, H, W, generator=gen).float().double().requires_grad_()
    x = torch.randn(N, IN, H, W, generator=gen).float().double().requires_grad_()
    labels = torch.randint(0, k, (N, H * SCALE, W * SCALE), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.1] = 255
    logits, aux = head(aux_x, x)
    size = labels.shape[1:]
    full = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    aux_full = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
    main = ohem_ce(full, labels, min_kept)
    aux_ce = F.cross_entropy(aux_full, labels, ignore_index=255)
    total = main + 0.4 * aux_ce
    total.backward()
    out[f"{prefix}.aux_features"] = aux_x.detach().float()
    out[f"{prefix}.features"] = x.detach().float()
    out[f"{prefix}.labels"] = labels.int()
    out[f"{prefix}.logits"] = logits.detach().float()
    out[f"{prefix}.aux_logits"] = aux.detach().float()
    out[f"{prefix}.loss"] = torch.tensor([main.item(), aux_ce.item(), total.item()]).float()
    out[f"{prefix}.min_kept"] = torch.tensor([min_kept]).int()
    out[f"{prefix}.grad.aux_features"] = aux_x.grad.float()
    out[f"{prefix}.grad.features"] = x.grad.float()
    for name, p in head.named_parameters():
        out[f"{prefix}.grad.{name}"] = p.grad.float()
    print(f"{prefix}: main {main.item():.6f} aux {aux_ce.item():.6f}, "
          f"{sum(1 for _ in head.parameters())} parameters")


def main():
    gen = torch.Generator().manual_seed(6)
    out = {}
    make_case("ocr", 3, True, 150, gen, out)  # threshold = p_(150) > thresh
    make_case("baseline", 4, False, 60, gen, out)  # threshold = thresh
    path = golden_path("ocr")
    write_safetensors(path, out, {"ohem_thresh": OHEM_THRESH,
                                  "sizes": f"aux_in {AUX_IN} in {IN} ch {CH} key {KEY} "
                                           f"aux_ch {AUX_CH} N {N} h {H} w {W} scale {SCALE}"})
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
