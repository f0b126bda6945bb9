"""Golden values for tests/test_resnet.cpp: torchvision's ResNet as the reference.

Writes tests/golden/resnet.safetensors with
  - metadata "names.resnet18" / "names.resnet50": torchvision's state_dict (fc.* dropped) at
    full width as "name:d0xd1x...;..." in state_dict order;
  - for each parity case (resnet18 at width 25, output stride 32; resnet50 at width 25,
    output stride 8, i.e. dilated layer3/layer4): the input, the four features in training
    mode (batch statistics) and in eval mode (running statistics), the running means after the
    training forward, and parameter gradients of loss = sum_k sum(feature_k * r_k): full
    gradients for a few parameters and, for every parameter, two projections
    (sum(g * u), sum(g * v)) that any wrong element would change.
Weights, running statistics and r_k are not stored: both sides compute them from the formula
in formula() below (name hash + element index), so the file stays small.
torchvision's planes are scaled by the width (its ResNet hard-codes 64..512): WideResNet below
replicates ResNet.__init__ with scaled planes and reuses torchvision's _make_layer and blocks.
Run with /usr/bin/python3 (Debian's python3-torch and python3-torchvision).
"""
import math
import os
import sys

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet as tvr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import GOLDEN_DIR, write_safetensors  # noqa: E402


class WideResNet(tvr.ResNet):
    def __init__(self, block, layers, width_percent, replace_stride_with_dilation):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        scaled = lambda c: max(1, c * width_percent // 100)  # noqa: E731
        self.inplanes = scaled(64)
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, scaled(64), layers[0])
        self.layer2 = self._make_layer(block, scaled(128), layers[1], stride=2,
                                       dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, scaled(256), layers[2], stride=2,
                                       dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, scaled(512), layers[3], stride=2,
                                       dilate=replace_stride_with_dilation[2])

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]


def name_hash(name):
    return sum((j + 1) * ord(c) for j, c in enumerate(name)) % 1000


def formula(key, n):
    """Uniform in [-1, 1): splitmix64 of (i + 1) * golden + (hash(key) + 1) * C, i = 0..n-1.
    (A smooth formula such as sin(a i + b) makes channels nearly collinear, and batch norm on
    such near-constant channels amplifies float32 rounding: the reference itself would differ
    between float32 and float64.)"""
    with np.errstate(over="ignore"):
        z = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(name_hash(key) + 1) * np.uint64(0xD1B54A32D192ED03))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -52) - 1.0


def fill(model):
    """Every parameter and buffer from the formula, rounded to float32 (as the C++ test)."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            s = formula(name, t.numel()).reshape(t.shape)
            leaf = name.rsplit(".", 1)[1]
            if t.dim() == 4:  # conv weight
                fan_in = t.shape[1] * t.shape[2] * t.shape[3]
                value = s * math.sqrt(3.0 / fan_in)
            elif leaf == "weight":
                value = 1.0 + 0.2 * s
            elif leaf == "bias":
                value = 0.1 * s
            elif leaf == "running_mean":
                value = 0.1 * s
            elif leaf == "running_var":
                value = 1.0 + 0.3 * s * s
            else:
                raise ValueError(name)
            t.copy_(torch.from_numpy(value.astype(np.float32)))


def key_list(model):
    return ";".join(f"{k}:{'x'.join(str(d) for d in v.shape) if v.dim() else ''}"
                    for k, v in model.state_dict().items() if not k.startswith("fc."))


FULL_GRADS = ["conv1.weight", "layer2.0.downsample.0.weight", "layer3.0.conv1.weight"]


def parity_case(prefix, block, layers, width, replace, image_shape, out):
    torch.manual_seed(0)
    model = WideResNet(block, layers, width, replace)
    fill(model)
    model.double()  # the reference in float64: batch norm on 16-32 samples per channel
    x = torch.from_numpy(formula("input", int(np.prod(image_shape))).reshape(image_shape)
                         .astype(np.float32))
    out[prefix + "input"] = x
    x = x.double()
    model.eval()
    with torch.no_grad():
        for k, f in enumerate(model.features(x)):
            out[f"{prefix}eval.{k}"] = f.float()
    model.train()
    feats = model.features(x)
    loss = 0
    for k, f in enumerate(feats):
        out[f"{prefix}train.{k}"] = f.detach().float()
        r = torch.from_numpy(formula(f"r{k}", f.numel()).reshape(f.shape).astype(np.float32)).double()
        loss = loss + (f * r).sum()
    loss.backward()
    for name, p in model.named_parameters():
        g = p.grad.double().flatten().numpy()
        u = formula("u", g.size)
        v = formula("v", g.size) ** 2
        out[f"{prefix}proj.{name}"] = torch.tensor([float(g @ u), float(g @ v)], dtype=torch.float32)
        if name in FULL_GRADS:
            out[f"{prefix}grad.{name}"] = p.grad.detach().float()
    for name, b in model.named_buffers():
        if name.endswith("running_mean") and name.startswith(("bn1", "layer4.0")):
            out[f"{prefix}after.{name}"] = b.detach().float()


def main():
    torch.set_num_threads(1)
    out = {}
    parity_case("r18.", tvr.BasicBlock, [2, 2, 2, 2], 25, [False, False, False], (2, 3, 64, 64), out)
    parity_case("r50.", tvr.Bottleneck, [3, 4, 6, 3], 25, [False, True, True], (2, 3, 32, 32), out)
    metadata = {"names.resnet18": key_list(tvr.resnet18()), "names.resnet50": key_list(tvr.resnet50()),
                "generator": "tests/reference/gen_resnet.py", "torch": torch.__version__}
    path = os.path.join(GOLDEN_DIR, "resnet.safetensors")
    write_safetensors(path, out, metadata)
    print(path, os.path.getsize(path), "bytes,", len(out), "tensors")


if __name__ == "__main__":
    main()
