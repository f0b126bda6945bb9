"""Golden values for tests/test_hrnet.cpp and tests/test_resnet_decoder.cpp.

The reference modules below follow HRNet-official's code (HRNet-Semantic-Segmentation,
lib/models/seg_hrnet.py: BasicBlock, Bottleneck, HighResolutionModule, _make_transition_layer,
_make_layer, _make_stage), written out here because neither the official repository nor mmseg
is installable: same attribute names (so the same state_dict keys), same structure. One
difference, on purpose and as segkit (and mmseg, and HRNet's classification code): the
upsampling fuse path ends with nn.Upsample(scale_factor=2**(j-i), mode='nearest') inside
fuse_layers[i][j] instead of a bilinear F.interpolate in forward.

Writes
  tests/golden/hrnet.safetensors: metadata "names.hrnet18s" / "names.hrnet18s-w25" (state_dict
    keys and shapes of the W18-small-v2 without head, full width / width 25) and the parity case "hr." (width 25, input 2x3x64x96);
  tests/golden/resnet_decoder.safetensors: metadata "names.decoder48" (the paper's decoder on
    ResNet-50 features: Width 48, 3 modules, 4 blocks; "names.case": the parity case's) and the parity case "dec." (inputs of
    16/32/64/128 channels, Width 8, 2 modules, 1 block, features at 16x24 .. 2x3, N = 2).
Each case: inputs, the four outputs in training and eval mode, gradient projections of every
parameter for loss = sum_k sum(out_k * r_k), a few full gradients, running means after the
training forward; the decoder case also the input-feature gradients. Weights, running
statistics and r_k come from gen_resnet.py's formula (both sides compute them). float64.
Run with /usr/bin/python3.
"""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import GOLDEN_DIR, write_safetensors  # noqa: E402
from gen_resnet import fill, formula  # noqa: E402


def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class HighResolutionModule(nn.Module):
    def __init__(self, num_branches, block, num_blocks, num_inchannels, num_channels):
        super().__init__()
        self.num_inchannels = list(num_inchannels)
        self.num_branches = num_branches
        self.branches = nn.ModuleList(
            [self._make_one_branch(i, block, num_blocks, num_channels) for i in range(num_branches)])
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=False)

    def _make_one_branch(self, i, block, num_blocks, num_channels):
        downsample = None
        if self.num_inchannels[i] != num_channels[i] * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.num_inchannels[i], num_channels[i] * block.expansion, 1, bias=False),
                nn.BatchNorm2d(num_channels[i] * block.expansion))
        layers = [block(self.num_inchannels[i], num_channels[i], 1, downsample)]
        self.num_inchannels[i] = num_channels[i] * block.expansion
        for _ in range(1, num_blocks[i]):
            layers.append(block(self.num_inchannels[i], num_channels[i]))
        return nn.Sequential(*layers)

    def _make_fuse_layers(self):
        n, c = self.num_branches, self.num_inchannels
        fuse_layers = []
        for i in range(n):
            fuse_layer = []
            for j in range(n):
                if j > i:
                    fuse_layer.append(nn.Sequential(
                        nn.Conv2d(c[j], c[i], 1, 1, 0, bias=False), nn.BatchNorm2d(c[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    fuse_layer.append(None)
                else:
                    conv3x3s = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            conv3x3s.append(nn.Sequential(
                                nn.Conv2d(c[j], c[i], 3, 2, 1, bias=False), nn.BatchNorm2d(c[i])))
                        else:
                            conv3x3s.append(nn.Sequential(
                                nn.Conv2d(c[j], c[j], 3, 2, 1, bias=False), nn.BatchNorm2d(c[j]),
                                nn.ReLU(inplace=False)))
                    fuse_layer.append(nn.Sequential(*conv3x3s))
            fuse_layers.append(nn.ModuleList(fuse_layer))
        return nn.ModuleList(fuse_layers)

    def forward(self, x):
        x = [self.branches[i](x[i]) for i in range(self.num_branches)]
        out = []
        for i in range(self.num_branches):
            y = x[0] if i == 0 else self.fuse_layers[i][0](x[0])
            for j in range(1, self.num_branches):
                y = y + (x[j] if i == j else self.fuse_layers[i][j](x[j]))
            out.append(self.relu(y))
        return out


def make_transition(pre, cur):
    layers = []
    for i in range(len(cur)):
        if i < len(pre):
            if cur[i] != pre[i]:
                layers.append(nn.Sequential(conv3x3(pre[i], cur[i]), nn.BatchNorm2d(cur[i]),
                                            nn.ReLU(inplace=False)))
            else:
                layers.append(None)
        else:
            convs = []
            for j in range(i + 1 - len(pre)):
                inc = pre[-1]
                outc = cur[i] if j == i - len(pre) else inc
                convs.append(nn.Sequential(conv3x3(inc, outc, 2), nn.BatchNorm2d(outc),
                                           nn.ReLU(inplace=False)))
            layers.append(nn.Sequential(*convs))
    return nn.ModuleList(layers)


def make_stage(modules, channels, blocks):
    n = len(channels)
    return nn.Sequential(*[HighResolutionModule(n, BasicBlock, [blocks] * n, channels, channels)
                           for _ in range(modules)])


def run_stage(stage, x):
    for m in stage:
        x = m(x)
    return x


class HRNetW18Small(nn.Module):
    """seg_hrnet_w18_small_v2 without last_layer; every channel count scaled by width/100."""

    def __init__(self, width=100):
        super().__init__()
        s = lambda c: max(1, c * width // 100)  # noqa: E731
        stem, planes = s(64), s(64)
        c = [s(18), s(36), s(72), s(144)]
        self.conv1 = conv3x3(3, stem, 2)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = conv3x3(stem, stem, 2)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=False)
        down = nn.Sequential(nn.Conv2d(stem, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4))
        self.layer1 = nn.Sequential(Bottleneck(stem, planes, 1, down), Bottleneck(planes * 4, planes))
        self.transition1 = make_transition([planes * 4], c[:2])
        self.stage2 = make_stage(1, c[:2], 2)
        self.transition2 = make_transition(c[:2], c[:3])
        self.stage3 = make_stage(3, c[:3], 2)
        self.transition3 = make_transition(c[:3], c)
        self.stage4 = make_stage(2, c, 2)

    def forward(self, x):
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        x = self.layer1(x)
        xl = [t(x) if t is not None else x for t in self.transition1]
        y = run_stage(self.stage2, xl)
        xl = [self.transition2[i](y[-1]) if i >= 2 else y[i] for i in range(3)]
        y = run_stage(self.stage3, xl)
        xl = [self.transition3[i](y[-1]) if i >= 3 else y[i] for i in range(4)]
        return run_stage(self.stage4, xl)


class ResNetDecoder(nn.Module):
    """SaF supplementary D: Conv3x3 (+BN+ReLU) reductions to [W, 2W, 4W, 8W], then HRNet's
    last stage (stage4)."""

    def __init__(self, in_channels, width=48, modules=3, blocks=4):
        super().__init__()
        c = [width, 2 * width, 4 * width, 8 * width]
        self.reduce = nn.ModuleList([nn.Sequential(conv3x3(i, o), nn.BatchNorm2d(o), nn.ReLU(inplace=False))
                                     for i, o in zip(in_channels, c)])
        self.stage4 = make_stage(modules, c, blocks)

    def forward(self, feats):
        return run_stage(self.stage4, [r(f) for r, f in zip(self.reduce, feats)])


def key_list(model):
    return ";".join(f"{k}:{'x'.join(str(d) for d in v.shape) if v.dim() else ''}"
                    for k, v in model.state_dict().items())


def as_tensor(key, shape):
    return torch.from_numpy(formula(key, int(np.prod(shape))).reshape(shape).astype(np.float32))


def parity_case(prefix, model, inputs, full_grads, after_prefixes, out):
    fill(model)
    model.double()
    for k, x in enumerate(inputs):
        out[f"{prefix}input.{k}"] = x
    xs = [x.double().requires_grad_(True) for x in inputs]
    arg = xs[0] if len(xs) == 1 else xs
    model.eval()
    with torch.no_grad():
        for k, f in enumerate(model(arg)):
            out[f"{prefix}eval.{k}"] = f.float()
    model.train()
    loss = 0
    for k, f in enumerate(model(arg)):
        out[f"{prefix}train.{k}"] = f.detach().float()
        loss = loss + (f * as_tensor(f"r{k}", f.shape).double()).sum()
    loss.backward()
    for name, p in model.named_parameters():
        g = p.grad.double().flatten().numpy()
        u, v = formula("u", g.size), formula("v", g.size) ** 2
        out[f"{prefix}proj.{name}"] = torch.tensor([float(g @ u), float(g @ v)], dtype=torch.float32)
        if name in full_grads:
            out[f"{prefix}grad.{name}"] = p.grad.detach().float()
    if len(xs) > 1:
        for k, x in enumerate(xs):
            out[f"{prefix}dinput.{k}"] = x.grad.float()
    for name, b in model.named_buffers():
        if name.endswith("running_mean") and name.startswith(after_prefixes):
            out[f"{prefix}after.{name}"] = b.detach().float()


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = {}
    parity_case("hr.", HRNetW18Small(25), [as_tensor("input", (2, 3, 64, 96))],
                ["conv1.weight", "transition1.1.0.0.weight", "stage4.1.fuse_layers.3.0.2.0.weight",
                 "stage4.1.fuse_layers.0.3.0.weight"],
                ("bn1", "stage4.1.fuse_layers.0.3"), out)
    meta = {"names.hrnet18s": key_list(HRNetW18Small(100)), "names.hrnet18s-w25": key_list(HRNetW18Small(25)),
            "generator": "tests/reference/gen_hrnet.py",
            "torch": torch.__version__}
    path = os.path.join(GOLDEN_DIR, "hrnet.safetensors")
    write_safetensors(path, out, meta)
    print(path, os.path.getsize(path), "bytes,", len(out), "tensors")

    out = {}
    feats = [as_tensor(f"feature{k}", (2, c, 16 >> k, 24 >> k)) for k, c in enumerate([16, 32, 64, 128])]
    parity_case("dec.", ResNetDecoder([16, 32, 64, 128], 8, 2, 1), feats,
                ["reduce.0.0.weight", "stage4.0.fuse_layers.0.3.0.weight",
                 "stage4.1.branches.2.0.conv2.weight"],
                ("reduce.0", "stage4.1.fuse_layers.3.0"), out)
    meta = {"names.decoder48": key_list(ResNetDecoder([256, 512, 1024, 2048])),
            "names.case": key_list(ResNetDecoder([16, 32, 64, 128], 8, 2, 1)),
            "generator": "tests/reference/gen_hrnet.py", "torch": torch.__version__}
    path = os.path.join(GOLDEN_DIR, "resnet_decoder.safetensors")
    write_safetensors(path, out, meta)
    print(path, os.path.getsize(path), "bytes,", len(out), "tensors")


if __name__ == "__main__":
    main()
