"""PyTorch (float64) re-implementation of the SaF head's ablations (supplementary Table A,
docs/saf_ablations.md) and the golden file tests/test_saf_ablations.cpp checks
models::saf_head against: for each configuration below, the parameters (loaded by name in C++),
the semantic / unity logits, the targets the loss used, the loss terms, every parameter
gradient, the feature gradient, the BN running statistics and the fuser's outputs.
Configurations: A (plain, single), B (APNB, single), C (contextual module, single), F (plain
pyramid, TP), G (APNB on X(L) + pyramid), H (APNB per level), J (auxiliary pyramid, 0.4),
K (levels {8, 1} x the finest stride: strides {32, 4}).
APNB follows ANL's code (key/query shared Conv1x1-BN-ReLU, PSP-sampled keys and values,
W, Conv1x1-BN-ReLU on concat(context, x)), without the convs' bias in front of a BN, one
shared key/query evaluation and no dropout (models/saf_anl.hpp says why).
Run: /usr/bin/python3 tests/reference/gen_saf_ablations.py"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from golden import golden_path, seeded, write_safetensors
from gen_saf import (CBR, IGNORE, Classifier, Residual, masked_bce, masked_ce, pyramid_sampling,
                     random_labels)


class APNB(nn.Module):
    def __init__(self, c, kc, vc):
        super().__init__()
        self.key = CBR(c, kc, 1)
        self.value = nn.Conv2d(c, vc, 1)
        self.W = nn.Conv2d(vc, c, 1)
        self.fuse = CBR(2 * c, c, 1)
        self.kc = kc

    def forward(self, x):
        n, _, h, w = x.shape
        f = self.key(x)
        k = pyramid_sampling(f).flatten(2)               # [N, kc, S]
        v = pyramid_sampling(self.value(x)).flatten(2)   # [N, vc, S]
        p = torch.softmax(f.flatten(2).transpose(1, 2) @ k / math.sqrt(self.kc), -1)  # [N, HW, S]
        ctx = (v @ p.transpose(1, 2)).view(n, -1, h, w)
        return self.fuse(torch.cat([self.W(ctx), x], 1))


class Level(nn.Module):
    def __init__(self, ds, c, kc, vc, last, context, predicted):
        super().__init__()
        self.context, self.last = context, last
        if context == "anl_multi":
            self.anl = APNB(ds, kc, vc)
        if context == "coarse_to_fine":
            self.query = nn.Conv2d(ds, ds, 1)
            self.key = nn.Conv2d(ds, ds, 1)
            self.value = nn.Conv2d(ds, ds, 1)
            self.agg = nn.Conv2d(2 * ds, ds, 1) if last else Residual(ds)
        self.cls = Classifier(ds, c) if predicted else None

    def features(self, x, theta):
        if self.context == "anl_multi":
            return self.anl(x)
        if self.context != "coarse_to_fine":
            return x
        n, d, h, w = x.shape
        q = self.query(x).flatten(2)
        k = self.key(theta).flatten(2)
        v = self.value(theta).flatten(2)
        p = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(d), -1)
        a = (v @ p.transpose(1, 2)).view(n, d, h, w)
        return self.agg(torch.cat([a, x], 1))


class Semantic(nn.Module):
    def __init__(self, d, ds, c, scales, context, output, kc, vc):
        super().__init__()
        self.scales, self.context = scales, context
        L = len(scales)
        self.input = nn.Conv2d(d, ds, 1)
        if context == "anl":
            self.anl = APNB(ds, kc, vc)
        self.computed = []
        mods = []
        for i in range(L):
            last = i == L - 1
            predicted = last or output != "single"
            computed = predicted or context == "coarse_to_fine"
            self.computed.append(computed)
            mods.append(Level(ds, c, kc, vc, last, context, predicted) if computed else nn.Identity())
        self.levels = nn.ModuleList(mods)
        if context == "coarse_to_fine":
            self.update = nn.ModuleList([nn.Conv2d(2 * ds, ds, 1) for _ in range(L - 1)])

    def forward(self, x):
        xl = self.input(x)
        base = self.anl(xl) if self.context == "anl" else xl
        theta = pyramid_sampling(base) if self.context == "coarse_to_fine" else None
        out = []
        for i, s in enumerate(self.scales):
            if not self.computed[i]:
                continue
            lv = self.levels[i]
            xp = lv.features(F.avg_pool2d(base, s) if s > 1 else base, theta)
            if lv.cls is not None:
                out.append(lv.cls(xp))
            if self.context == "coarse_to_fine" and i + 1 < len(self.scales):
                theta = self.update[i](torch.cat([pyramid_sampling(xp), theta], 1))
        return out


class Unity(nn.Module):
    def __init__(self, d, du, scales):
        super().__init__()
        self.reduce = CBR(d, du, 1)
        self.heads = nn.ModuleList([nn.Conv2d(du, 1, s, stride=s) for s in scales[:-1]])

    def forward(self, x):
        r = self.reduce(x)
        return [h(r) for h in self.heads]


class Head(nn.Module):
    def __init__(self, d, ds, du, c, scales, context, output, kc, vc):
        super().__init__()
        self.output = output
        if output == "pyramidal":
            self.unity = Unity(d, du, scales)
        self.semantic = Semantic(d, ds, c, scales, context, output, kc, vc)

    def forward(self, x):
        return self.semantic(x), (self.unity(x) if self.output == "pyramidal" else [])


def ground_truth(labels, strides):
    """Y and U (one per level; U of the finest unused) by brute force per cell."""
    n, hh, ww = labels.shape
    ys, us = [], []
    for i, s in enumerate(strides):
        h, w = hh // s, ww // s
        if i == len(strides) - 1:
            ys.append(labels[:, ::s, ::s].clone())
            break
        y = torch.full((n, h, w), IGNORE, dtype=torch.int64)
        u = torch.full((n, h, w), IGNORE, dtype=torch.int64)
        for b in range(n):
            for r in range(h):
                for q in range(w):
                    block = labels[b, r * s:(r + 1) * s, q * s:(q + 1) * s]
                    classes = set(block[block != IGNORE].tolist())
                    if len(classes) >= 2:
                        u[b, r, q] = 0
                    elif len(classes) == 1 and not bool((block == IGNORE).any()):
                        u[b, r, q] = 1
                        y[b, r, q] = classes.pop()
        ys.append(y)
        us.append(u)
    return ys, us


def up(t, f, dims):
    for d in dims:
        t = t.repeat_interleave(f, d)
    return t


def relabel_tp(ys, us, unity, scales):
    for l in range(1, len(ys)):
        done = torch.zeros_like(ys[l], dtype=torch.bool)
        for k in range(l):
            tp = (us[k] == 1) & (unity[k][:, 0] >= 0)
            done |= up(tp, scales[k] // scales[l], (1, 2))
        ys[l][done] = IGNORE
        if l < len(ys) - 1:
            us[l][done] = IGNORE
    return ys, us


def fuse(semantic, unity, scales):
    L = len(semantic)
    level = torch.full(semantic[-1][:, 0].shape, L - 1, dtype=torch.int64)
    for k in reversed(range(len(unity))):
        level[up(unity[k][:, 0] >= 0, scales[k], (1, 2))] = k
    logits = torch.zeros_like(semantic[-1])
    for k in range(L):
        logits = torch.where((level == k).unsqueeze(1), up(semantic[k], scales[k], (2, 3)), logits)
    return logits, logits.argmax(1), level + 1


CONFIGS = {  # id: (context, output, scales)
    "A": ("none", "single", [8, 4, 2, 1]),
    "B": ("anl", "single", [8, 4, 2, 1]),
    "C": ("coarse_to_fine", "single", [8, 4, 2, 1]),
    "F": ("none", "pyramidal", [8, 4, 2, 1]),
    "G": ("anl", "pyramidal", [8, 4, 2, 1]),
    "H": ("anl_multi", "pyramidal", [8, 4, 2, 1]),
    "J": ("coarse_to_fine", "auxiliary", [8, 4, 2, 1]),
    "K": ("coarse_to_fine", "pyramidal", [8, 1]),
}


def run(gen, cid, x0, labels, d, ds, du, c, kc, vc, finest, out):
    context, output, scales = CONFIGS[cid]
    L = len(scales)
    head = Head(d, ds, du, c, scales, context, output, kc, vc)
    with torch.no_grad():
        for name, p in head.named_parameters():  # move BN affine away from (1, 0)
            if name.endswith("bn.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bn.bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.empty(p.shape).uniform_(-0.5, 0.5, generator=gen))
            p.copy_(p.float().double())  # exactly what the C++ test loads
    head.train()
    x = x0.clone().requires_grad_()
    params = {k: v.detach().clone() for k, v in head.named_parameters()}
    semantic, unity = head(x)
    ys, us = ground_truth(labels, [finest * s for s in scales])
    if output == "pyramidal":
        ys, us = relabel_tp(ys, us, [u.detach() for u in unity], scales)
        ce = sum(masked_ce(semantic[i], ys[i]) for i in range(L)) / L
        bce = sum(masked_bce(unity[i], us[i]) for i in range(L - 1)) / (L - 1)
        terms, total = {"ce": ce, "bce": bce}, ce + bce
        fl, flab, lm = fuse([s.detach() for s in semantic], [u.detach() for u in unity], scales)
    else:
        ce = masked_ce(semantic[-1], ys[-1])
        terms, total = {"ce": ce}, ce
        if output == "auxiliary":
            aux = sum(masked_ce(semantic[i], ys[i]) for i in range(L - 1)) / (L - 1)
            terms["aux"] = aux
            total = ce + 0.4 * aux
        fl = semantic[-1].detach()
        flab, lm = fl.argmax(1), torch.full(fl[:, 0].shape, L, dtype=torch.int64)
    total.backward()
    p = cid + "."
    out[p + "dx"] = x.grad.float()
    for k, v in terms.items():
        out[p + "term." + k] = torch.tensor([v.item()]).float()
    if output == "pyramidal":  # else: the finest logits and a constant map (checked as such)
        out[p + "fused_logits"] = fl.float()
        out[p + "level_map"] = lm.to(torch.uint8)
    out[p + "fused_labels"] = flab.to(torch.uint8)
    for i, s in enumerate(semantic):
        out[p + "semantic.%d" % i] = s.detach().float()
    for i, u in enumerate(unity):
        out[p + "unity.%d" % i] = u.detach().float()
    for i in range(L):
        out[p + "target_y.%d" % i] = ys[i].to(torch.uint8)
        if i + 1 < L and output == "pyramidal":
            out[p + "target_u.%d" % i] = us[i].to(torch.uint8)
    for name, prm in head.named_parameters():
        out[p + "param." + name] = params[name].float()
        out[p + "grad." + name] = prm.grad.float()
    for name, b in head.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out[p + "buffer." + name] = b.float()
    print("%s: %s  levels used %s" % (cid, {k: round(v.item(), 6) for k, v in terms.items()},
                                       torch.bincount(lm.flatten()).tolist()))


def main():
    gen = seeded(64)
    torch.set_default_dtype(torch.float64)
    n, d, ds, du, c, kc, vc, finest, hw = 1, 4, 4, 3, 3, 2, 3, 4, 16
    x = torch.randn(n, d, hw, hw, generator=gen).float().double()
    labels = random_labels(gen, n, hw * finest, c, finest * 8)
    out = {"x": x.float(), "labels": labels.to(torch.uint8)}  # integer maps as uint8: file size
    for cid in CONFIGS:
        run(gen, cid, x, labels, d, ds, du, c, kc, vc, finest, out)
    write_safetensors(golden_path("saf_ablations"), out,
                      {"D": d, "D_s": ds, "D_u": du, "classes": c, "anl_key": kc,
                       "anl_value": vc, "finest_stride": finest, "configs": "".join(CONFIGS)})


if __name__ == "__main__":
    main()
