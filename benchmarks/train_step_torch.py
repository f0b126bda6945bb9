#!/usr/bin/env python3
"""PyTorch (CPU) training step of segkit's zoo models, for benchmarks/bench_train_step.cpp.

Usage:
  train_step_torch.py fcn|saf|hfgd|ocr [--batch 8] [--size 192] [--classes 11] [--steps 5]
                      [--warmup 1] [--threads T] [--seed 0]
Prints one JSON line: {"method", "median_ms", "peak_mb", "params", "threads", "torch",
"steps_ms": [...], "backbone": "torchvision"|"local", ...}.

The models are built the way a PyTorch user would build them, with the same hyper-parameters as
include/segkit/models/zoo.hpp (the zoo names in brackets):
  fcn  [fcn-resnet18]   torchvision ResNet-18, output stride 8 (replace_stride_with_dilation
                        [F, T, T]; torchvision's BasicBlock refuses dilation, so DilatedBasicBlock
                        below dilates its two 3x3 convolutions, as segkit does), mmseg FCNHead
                        (2 convs of 128, concat_input, Dropout2d 0.1) on layer4 + FCNHead aux
                        (1 conv of 64) on layer3; CE + 0.4 aux CE on logits resized bilinearly.
  saf  [saf-resnet18]   ResNet-18 (stride 32) -> ResNetDecoder (W 48, 3 modules, 4 blocks;
                        tests/reference/gen_hrnet.py) -> HRNetV2 concat (bilinear upsample of
                        branches 1..3, 720 channels, stride 4) -> SaFHead (D_s 64, D_u 64, L 4;
                        tests/reference/gen_saf.py) with its Eq. 1 loss (pyramidal GT + TP
                        re-labeling); no fusion in a training step (as segkit).
  hfgd [hfgd-resnet18]  ResNet-18 (stride 32) -> HFGD head (Cae 256, Key 64, Fpn 128, 4 axial
                        heads, OS 4, HFGM + axial; functional, tests/reference/gen_hfgd.py) +
                        FCN aux head (64) on layer3 x 0.4; CE fine + CE coarse + CAR.
  ocr  [ocr-resnet18]   ResNet-18 (stride 8) -> OCRNet cascade (aux FCN 128 on layer3, OCR 256,
                        key 128; tests/reference/gen_ocr.py) + Dropout2d 0.05; HRNet's OHEM CE
                        (thresh 0.7, min_kept scaled as segkit) + 0.4 aux CE.
The head modules are IMPORTED from tests/reference (the same re-implementations segkit's
parity tests check against), with their size constants set to the zoo's.

Step = optimizer.zero_grad(); losses; backward(); SGD step (lr 0.01, momentum 0.9, weight decay
5e-4), BN in training mode. Time: median of --steps steps after --warmup steps.
Peak memory: VmRSS read from /proc/self/status after the input batch is made and before the
model is built (the baseline), peak RSS (VmHWM) reset there by writing 5 to
/proc/self/clear_refs, then peak = VmHWM after the timed steps; reported: peak - baseline (MB =
2^20 bytes) = parameters + gradients + optimizer state + activations + allocator/oneDNN caches.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference")
sys.path.insert(0, REFERENCE)
import gen_hfgd  # noqa: E402
import gen_hrnet  # noqa: E402
import gen_ocr  # noqa: E402
import gen_saf  # noqa: E402

IGNORE = 255

# ---- backbone ---------------------------------------------------------------------------------
try:
    from torchvision.models import resnet as tvr

    BACKBONE_SOURCE = "torchvision"

    class DilatedBasicBlock(tvr.BasicBlock):
        """torchvision's BasicBlock raises on dilation > 1; dilate both 3x3 convs instead."""

        def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                     dilation=1, norm_layer=None):
            super().__init__(inplanes, planes, stride, downsample, groups, base_width, 1, norm_layer)
            if dilation > 1:
                self.conv1 = tvr.conv3x3(inplanes, planes, stride, dilation=dilation)
                self.conv2 = tvr.conv3x3(planes, planes, dilation=dilation)

    def resnet18(output_stride):
        replace = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
        model = tvr.ResNet(DilatedBasicBlock, [2, 2, 2, 2],
                           replace_stride_with_dilation=replace[output_stride])
        del model.fc, model.avgpool  # a segmentation backbone: no classifier
        return model

except ImportError:  # no torchvision: the same network, written out
    BACKBONE_SOURCE = "local"

    class DilatedBasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride, dilation, first_dilation):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, first_dilation, first_dilation, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, first_dilation, first_dilation, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class LocalResNet(nn.Module):
        def __init__(self, output_stride):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            dilate = {32: [False] * 3, 16: [False, False, True], 8: [False, True, True]}[output_stride]
            inplanes, dilation = 64, 1
            for i, planes in enumerate((64, 128, 256, 512)):
                stride, previous = (1 if i == 0 else 2), dilation
                if i > 0 and dilate[i - 1]:
                    dilation, stride = dilation * stride, 1
                blocks = [DilatedBasicBlock(inplanes, planes, stride, dilation, previous),
                          DilatedBasicBlock(planes, planes, 1, dilation, dilation)]
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
                inplanes = planes

    def resnet18(output_stride):
        return LocalResNet(output_stride)


def features(backbone, x):
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    f1 = backbone.layer1(x)
    f2 = backbone.layer2(f1)
    f3 = backbone.layer3(f2)
    return [f1, f2, f3, backbone.layer4(f3)]


def resize(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# ---- FCN (mmseg FCNHead) ------------------------------------------------------------------------
ConvModule = gen_saf.CBR  # mmcv ConvModule(conv no bias, BN, ReLU): names conv.*, bn.*


class FCNHead(nn.Module):
    def __init__(self, in_channels, channels, num_convs, concat_input, num_classes, dropout=0.1):
        super().__init__()
        convs = [ConvModule(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs)]
        self.convs = nn.Sequential(*convs)
        self.concat_input = concat_input
        if concat_input:
            self.conv_cat = ConvModule(in_channels + channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        y = self.convs(x)
        if self.concat_input:
            y = self.conv_cat(torch.cat([x, y], 1))
        return self.conv_seg(self.dropout(y))


class FCN(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.backbone = resnet18(8)
        self.decode_head = FCNHead(512, 128, 2, True, k)
        self.auxiliary_head = FCNHead(256, 64, 1, False, k)

    def loss(self, images, labels):
        f = features(self.backbone, images)
        size = labels.shape[1:]
        ce = F.cross_entropy(resize(self.decode_head(f[3]), size), labels, ignore_index=IGNORE)
        aux = F.cross_entropy(resize(self.auxiliary_head(f[2]), size), labels, ignore_index=IGNORE)
        return ce + 0.4 * aux


# ---- SaF ----------------------------------------------------------------------------------------
def pyramid_ground_truth(labels, levels, finest, k):
    """gen_saf.ground_truth vectorised (its per-cell Python loop takes seconds at 8x192x192):
    a cell of level l (stride finest * 2^(L-1-l)) is a unit (U = 1, Y = its class) when it holds
    one class and no ignore, a boundary (U = 0, Y = ignore) with two or more classes, else
    ignored; the finest level takes every finest-th label."""
    onehot = F.one_hot(torch.where(labels == IGNORE, k, labels), k + 1).permute(0, 3, 1, 2).float()
    ys, us = [], []
    for i in range(levels):
        s = finest * 2 ** (levels - 1 - i)
        if i == levels - 1:
            ys.append(labels[:, ::s, ::s].clone())
            break
        present = F.max_pool2d(onehot, s) > 0  # [N, K+1, h, w]
        classes = present[:, :k].sum(1)
        has_ignore = present[:, k]
        unit = (classes == 1) & ~has_ignore
        u = torch.full_like(classes, IGNORE)
        u[classes >= 2] = 0
        u[unit] = 1
        y = torch.where(unit, present[:, :k].float().argmax(1), torch.full_like(classes, IGNORE))
        ys.append(y)
        us.append(u)
    return ys, us


def masked_bce(logits, target):
    """gen_saf.masked_bce in the logits' dtype (gen_saf runs in float64)."""
    valid = target != IGNORE
    if not valid.any():
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits[:, 0][valid], target[valid].to(logits.dtype),
                                              reduction="sum") / valid.sum()


class SaF(nn.Module):
    LEVELS, FINEST, DS, DU, WIDTH = 4, 4, 64, 64, 48

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.backbone = resnet18(32)
        self.decoder = gen_hrnet.ResNetDecoder([64, 128, 256, 512], self.WIDTH, 3, 4)
        self.head = gen_saf.SaFHead(15 * self.WIDTH, self.DS, self.DU, k, self.LEVELS)

    def loss(self, images, labels):
        branches = self.decoder(features(self.backbone, images))
        size = branches[0].shape[2:]
        x = torch.cat([branches[0]] + [resize(b, size) for b in branches[1:]], 1)  # HRNetV2
        semantic, unity = self.head(x)
        ys, us = pyramid_ground_truth(labels, self.LEVELS, self.FINEST, self.k)
        ys, us = gen_saf.relabel_tp(ys, us, [u.detach() for u in unity])
        levels = self.LEVELS
        ce = sum(gen_saf.masked_ce(semantic[i], ys[i]) for i in range(levels)) / levels
        bce = sum(masked_bce(unity[i], us[i]) for i in range(levels - 1))
        return ce + bce / (levels - 1)  # training needs no fusion (segkit's step skips it too)


# ---- HFGD (functional, as tests/reference/gen_hfgd.py) ------------------------------------------
class HFGD(nn.Module):
    def __init__(self, k):
        super().__init__()
        gen_hfgd.CH = [64, 128, 256, 512]
        gen_hfgd.CAE, gen_hfgd.KEY, gen_hfgd.FPN, gen_hfgd.HEADS, gen_hfgd.K = 256, 64, 128, 4, k
        self.backbone = resnet18(32)
        params = gen_hfgd.make_params(torch.Generator().manual_seed(0), 4, True, True)
        self.head = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(v.float()) for n, v in params.items()})
        self.auxiliary_head = FCNHead(256, 64, 1, False, k)

    def loss(self, images, labels):
        P = {n.replace("__", "."): v for n, v in self.head.items()}
        f = features(self.backbone, images)
        x = gen_hfgd.cbr(P, "cae.1", gen_hfgd.cbr(P, "cae.0", f[3]))
        x_car = gen_hfgd.self_attention(P, x)
        cae = gen_hfgd.cbr(P, "cae.3", x_car)
        coarse = gen_hfgd.conv1(P, "cls", gen_hfgd.cbr(P, "proj", cae))
        ins = [f[0].detach(), f[1].detach(), f[2].detach(), cae.detach()]  # HFGM
        total = 0
        for i in range(4):
            b = gen_hfgd.cbr(P, f"usfpn.branches.{i}.0", ins[i])
            if i >= 1:
                b = gen_hfgd.up2(b)
            for j in range(1, i):
                b = gen_hfgd.up2(gen_hfgd.cbr(P, f"usfpn.branches.{i}.{2 * j}", b))
            total = total + b
        a = gen_hfgd.axial_attention(P, gen_hfgd.cbr(P, "usfpn.fuse", total))
        fine = F.conv2d(a, P["cls.weight"].detach(), P["cls.bias"].detach())
        size = labels.shape[1:]
        ce_fine = F.cross_entropy(resize(fine, size), labels, ignore_index=IGNORE)
        ce_coarse = F.cross_entropy(resize(coarse, size), labels, ignore_index=IGNORE)
        small = F.interpolate(labels[:, None].float(), size=x_car.shape[2:], mode="nearest")[:, 0].long()
        intra, inter, c2p = gen_hfgd.car(x_car, small)
        aux = F.cross_entropy(resize(self.auxiliary_head(f[2]), size), labels, ignore_index=IGNORE)
        return ce_fine + ce_coarse + intra + inter + c2p + 0.4 * aux


# ---- OCR ----------------------------------------------------------------------------------------
def ohem_cross_entropy(score, target, thresh, min_kept):
    """HRNet-OCR's OhemCrossEntropy (gen_ocr.ohem_ce without its golden-file assertions)."""
    pred = F.softmax(score, dim=1)
    pixel_losses = F.cross_entropy(score, target, ignore_index=IGNORE, reduction="none").view(-1)
    mask = target.view(-1) != IGNORE
    tmp = target.clone()
    tmp[tmp == IGNORE] = 0
    pred = pred.gather(1, tmp.unsqueeze(1)).view(-1)[mask]
    pred, ind = pred.sort()
    min_value = pred[min(max(1, min_kept), pred.numel() - 1)]
    threshold = max(min_value.item(), thresh)
    return pixel_losses[mask][ind][pred < threshold].mean()


class OCR(nn.Module):
    def __init__(self, k):
        super().__init__()
        gen_ocr.AUX_IN, gen_ocr.IN, gen_ocr.CH, gen_ocr.KEY, gen_ocr.AUX_CH = 256, 512, 256, 128, 128
        self.backbone = resnet18(8)
        head = gen_ocr.Head(k, True)
        ocr_head = head.decode_head[1]
        ocr_head.conv_seg = nn.Sequential(nn.Dropout2d(0.05), ocr_head.conv_seg)  # mmseg's dropout
        self.decode_head = head.decode_head

    def loss(self, images, labels):
        f = features(self.backbone, images)
        regions = self.decode_head[0](f[2])
        logits = self.decode_head[1](f[3], regions)
        size = labels.shape[1:]
        min_kept = max(1, round(100000 * labels.numel() / (2 * 512 * 1024)))
        main = ohem_cross_entropy(resize(logits, size), labels, 0.7, min_kept)
        aux = F.cross_entropy(resize(regions, size), labels, ignore_index=IGNORE)
        return main + 0.4 * aux


MODELS = {"fcn": FCN, "saf": SaF, "hfgd": HFGD, "ocr": OCR}


# ---- measurement --------------------------------------------------------------------------------
def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("method", choices=sorted(MODELS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    images = torch.randn(a.batch, 3, a.size, a.size, generator=g)
    labels = torch.randint(0, a.classes, (a.batch, a.size, a.size), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.1] = IGNORE

    baseline_kb = status_kb("VmRSS")
    peak_reset = reset_peak()
    model = MODELS[a.method](a.classes).train()
    params = sum(q.numel() for q in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step():
        optimizer.zero_grad()
        loss = model.loss(images, labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1e3)
    peak_kb = status_kb("VmHWM")
    print(json.dumps({
        "method": a.method, "median_ms": statistics.median(times), "steps_ms": times,
        "peak_mb": (peak_kb - baseline_kb) / 1024.0, "baseline_mb": baseline_kb / 1024.0,
        "peak_reset": peak_reset, "params": params, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "backbone": BACKBONE_SOURCE, "loss": loss,
        "finite": math.isfinite(loss)}))


if __name__ == "__main__":
    main()
