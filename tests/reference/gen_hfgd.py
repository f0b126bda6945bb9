"""Golden values for tests/test_hfgd.cpp: a PyTorch (float64) re-implementation of HFGD's head.

Functional, one dict of parameters named exactly as segkit's hfgd_head visits them; the
weights are random and stored in the file (the test loads them by name). Small channels
(C1..C4 = 4, 6, 8, 10; Cae 16, Key 8, Fpn 12, 4 axial heads) and features of 16x24 at stride 4,
batch 2, 5 classes. For each case (default: HFGM + axial, OS 4; "os2": output stride 2;
"nohfgm": without HFGM, without axial) it stores, under "<case>.":
  param.<name> (value), grad.<name> (gradient of the total loss), in.f0..f3, in.labels (I32),
  out.coarse, out.fine, out.x_car, loss.{ce_fine, ce_coarse, car_intra, car_inter, car_c2p,
  total} and dfeat.f0..f3.
BN is in training mode (batch statistics). Run with /usr/bin/python3 (torch 1.13).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, write_safetensors  # noqa: E402

CH = [4, 6, 8, 10]
CAE, KEY, FPN, HEADS, K = 16, 8, 12, 4, 5
N, H0, W0 = 2, 16, 24


def make_params(gen, os_, hfgm, axial):
    P = {}

    def conv(name, cout, cin, k, bias=False):
        P[name + ".weight"] = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64) / math.sqrt(cin * k * k)
        if bias:
            P[name + ".bias"] = 0.1 * torch.randn(cout, generator=gen, dtype=torch.float64)

    def cbr(name, cout, cin, k):
        conv(name + ".conv", cout, cin, k)
        P[name + ".bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=gen, dtype=torch.float64)
        P[name + ".bn.bias"] = 0.1 * torch.randn(cout, generator=gen, dtype=torch.float64)

    cbr("cae.0", CAE, CH[3], 1)
    cbr("cae.1", CAE, CAE, 1)
    conv("cae.2.query", KEY, CAE, 1, True)
    conv("cae.2.key", KEY, CAE, 1, True)
    conv("cae.2.value", CAE, CAE, 1, True)
    cbr("cae.3", CAE, CAE, 1)
    cbr("proj", FPN, CAE, 1)
    ins = [CH[0], CH[1], CH[2], CAE]
    for i in range(4):
        cbr(f"usfpn.branches.{i}.0", FPN, ins[i], 3)
        for j in range(1, i):
            cbr(f"usfpn.branches.{i}.{2 * j}", FPN, FPN, 3)
    if os_ == 2:
        for i in range(4):
            cbr(f"usfpn.extra.{i}.0", FPN, FPN, 3)
    cbr("usfpn.fuse", FPN, FPN, 1)
    if axial:
        for n in ("query", "key", "value"):
            conv("axial." + n, FPN, FPN, 1, True)
    conv("cls", K, FPN, 1, True)
    if not hfgm:
        conv("cls_fine", K, FPN, 1, True)
    return P


def cbr(P, name, x):
    w = P[name + ".conv.weight"]
    y = F.conv2d(x, w, padding=w.shape[-1] // 2)
    y = F.batch_norm(y, None, None, P[name + ".bn.weight"], P[name + ".bn.bias"], training=True, eps=1e-5)
    return F.relu(y)


def conv1(P, name, x):
    return F.conv2d(x, P[name + ".weight"], P.get(name + ".bias"))


def up2(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def self_attention(P, x):
    q, k, v = (conv1(P, "cae.2." + n, x).flatten(2) for n in ("query", "key", "value"))
    a = torch.softmax(torch.einsum("ncl,ncs->nls", q, k), dim=-1)  # no scaling
    return torch.einsum("nls,ncs->ncl", a, v).reshape(x.shape) + x


def axial_attention(P, x):
    n, c, h, w = x.shape
    q, k, v = (conv1(P, "axial." + m, x).reshape(n, HEADS, c // HEADS, h, w) for m in ("query", "key", "value"))
    s = 1 / math.sqrt(c // HEADS)
    a_col = torch.softmax(s * torch.einsum("nhciw,nhcjw->nhwij", q, k), dim=-1)
    y1 = torch.einsum("nhwij,nhcjw->nhciw", a_col, v)
    a_row = torch.softmax(s * torch.einsum("nhcia,nhcib->nhiab", q, k), dim=-1)
    out = torch.einsum("nhiab,nhcib->nhcia", a_row, y1)
    return out.reshape(n, c, h, w) + x


def car(x, labels_small):
    n, c, h, w = x.shape
    feats = x.permute(0, 2, 3, 1).reshape(-1, c)
    y = labels_small.reshape(-1).long()
    keep = y != 255
    feats, y = feats[keep], y[keep]
    M = feats.shape[0]
    present = sorted(set(y.tolist()))
    mu = torch.stack([feats[y == k].mean(0) for k in present])
    mub = mu.detach()
    slot = torch.tensor([present.index(v) for v in y.tolist()])
    intra = ((feats - mub[slot]).abs().sum() / (M * c)) ** 2
    Kp = len(present)
    root = math.sqrt(c)
    A = torch.softmax(mu @ mub.t() / root, dim=1)
    off = ~torch.eye(Kp, dtype=torch.bool)
    inter = (F.relu(A[off] - 0.5 / (K - 1)).sum() / (Kp * (Kp - 1))) ** 2
    e = feats @ mub.t() / root
    self_e = (mub * mub).sum(1) / root
    own = F.one_hot(slot, Kp).bool()
    e = torch.where(own, self_e[slot][:, None].expand_as(e), e)
    B = torch.softmax(e, dim=1)
    c2p = (F.relu(B[~own] - 0.25 / (K - 1)).sum() / (M * (Kp - 1))) ** 2
    return intra, inter, c2p


def run_case(gen, os_, hfgm, axial):
    P = {k: v.float().double().requires_grad_() for k, v in make_params(gen, os_, hfgm, axial).items()}
    f = [torch.randn(N, CH[i], H0 >> i, W0 >> i, generator=gen, dtype=torch.float64).float().double().requires_grad_() for i in range(4)]
    labels = torch.randint(0, K + 1, (N, 4 * H0, 4 * W0), generator=gen)
    labels[labels == K] = 255
    sg = (lambda t: t.detach()) if hfgm else (lambda t: t)

    x = cbr(P, "cae.1", cbr(P, "cae.0", f[3]))
    x_car = self_attention(P, x)
    x_car.retain_grad()
    cae = cbr(P, "cae.3", x_car)
    coarse = conv1(P, "cls", cbr(P, "proj", cae))
    ins = [sg(f[0]), sg(f[1]), sg(f[2]), sg(cae)]
    total = 0
    for i in range(4):
        b = cbr(P, f"usfpn.branches.{i}.0", ins[i])
        if i >= 1:
            b = up2(b)
        for j in range(1, i):
            b = up2(cbr(P, f"usfpn.branches.{i}.{2 * j}", b))
        if os_ == 2:
            b = up2(cbr(P, f"usfpn.extra.{i}.0", b))
        total = total + b
    u = cbr(P, "usfpn.fuse", total)
    a = axial_attention(P, u) if axial else u
    if hfgm:
        fine = F.conv2d(a, P["cls.weight"].detach(), P["cls.bias"].detach())
    else:
        fine = conv1(P, "cls_fine", a)
    size = labels.shape[1:]
    up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    ce_fine = F.cross_entropy(up(fine), labels, ignore_index=255)
    ce_coarse = F.cross_entropy(up(coarse), labels, ignore_index=255)
    small = F.interpolate(labels[:, None].double(), size=x_car.shape[2:], mode="nearest")[:, 0].long()
    intra, inter, c2p = car(x_car, small)
    loss = ce_fine + ce_coarse + intra + inter + c2p
    loss.backward()

    out = {}
    for k, v in P.items():
        out["param." + k] = v.detach().float()
        out["grad." + k] = (v.grad if v.grad is not None else torch.zeros_like(v)).float()
    for i in range(4):
        out[f"in.f{i}"] = f[i].detach().float()
        out[f"dfeat.f{i}"] = (f[i].grad if f[i].grad is not None else torch.zeros_like(f[i])).float()
    out["in.labels"] = labels.int()
    out["out.coarse"] = coarse.detach().float()
    out["out.fine"] = fine.detach().float()
    out["out.x_car"] = x_car.detach().float()
    for name, v in (("ce_fine", ce_fine), ("ce_coarse", ce_coarse), ("car_intra", intra),
                    ("car_inter", inter), ("car_c2p", c2p), ("total", loss)):
        out["loss." + name] = v.detach().reshape(1).float()
    return out


def main():
    gen = torch.Generator().manual_seed(6)
    tensors = {}
    for case, os_, hfgm, axial in (("default", 4, True, True), ("os2", 2, True, True),
                                   ("nohfgm", 4, False, False)):
        for k, v in run_case(gen, os_, hfgm, axial).items():
            tensors[case + "." + k] = v
    path = golden_path("hfgd")
    write_safetensors(path, tensors, {"generator": "tests/reference/gen_hfgd.py"})
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
