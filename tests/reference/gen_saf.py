"""PyTorch re-implementation of the Specialize-and-Fuse head (METHODS.md §1) in float64 and
the golden file tests/test_saf.cpp checks models::saf_head against: parameters (stored, so the
C++ test loads them by name), outputs, pyramidal ground truth after true-positive re-labeling,
the Eq. 1 loss terms, every parameter gradient, the feature gradient and the fuser's outputs.
Run: /usr/bin/python3 tests/reference/gen_saf.py"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from golden import golden_path, seeded, write_safetensors

IGNORE = 255


class CBR(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Residual(nn.Module):  # F_agg at l < L
    def __init__(self, ds):
        super().__init__()
        self.conv1 = CBR(2 * ds, ds, 3)
        self.conv2 = CBR(ds, ds, 3)
        self.skip = nn.Conv2d(2 * ds, ds, 1, bias=False)

    def forward(self, x):
        return self.conv2(self.conv1(x)) + self.skip(x)


class Classifier(nn.Module):
    def __init__(self, ds, c):
        super().__init__()
        self.conv1 = nn.Conv2d(ds, ds, 1, bias=False)
        self.bn = nn.BatchNorm2d(ds)
        self.conv2 = nn.Conv2d(ds, c, 1)

    def forward(self, x):
        return self.conv2(F.relu(self.bn(self.conv1(x))))


def pyramid_sampling(x, sizes=(1, 3, 6, 8)):  # [N, C, H, W] -> [N, C, 1, S]
    return torch.cat([F.adaptive_avg_pool2d(x, n).flatten(2) for n in sizes], 2).unsqueeze(2)


class Level(nn.Module):
    def __init__(self, ds, c, last):
        super().__init__()
        self.query = nn.Conv2d(ds, ds, 1)
        self.key = nn.Conv2d(ds, ds, 1)
        self.value = nn.Conv2d(ds, ds, 1)
        self.agg = nn.Conv2d(2 * ds, ds, 1) if last else Residual(ds)
        self.cls = Classifier(ds, c)

    def forward(self, x, theta):
        n, d, h, w = x.shape
        q = self.query(x).flatten(2)                # [N, d, HW]
        k = self.key(theta).flatten(2)              # [N, d, S]
        v = self.value(theta).flatten(2)
        p = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(d), -1)   # [N, HW, S]
        a = (v @ p.transpose(1, 2)).view(n, d, h, w)
        xp = self.agg(torch.cat([a, x], 1))
        return xp, self.cls(xp)


class Unity(nn.Module):
    def __init__(self, d, du, levels):
        super().__init__()
        self.reduce = CBR(d, du, 1)
        self.heads = nn.ModuleList(
            [nn.Conv2d(du, 1, 2 ** (levels - 1 - i), stride=2 ** (levels - 1 - i)) for i in range(levels - 1)])

    def forward(self, x):
        r = self.reduce(x)
        return [h(r) for h in self.heads]


class Semantic(nn.Module):
    def __init__(self, d, ds, c, levels):
        super().__init__()
        self.L = levels
        self.input = nn.Conv2d(d, ds, 1)
        self.levels = nn.ModuleList([Level(ds, c, i == levels - 1) for i in range(levels)])
        self.update = nn.ModuleList([nn.Conv2d(2 * ds, ds, 1) for _ in range(levels - 1)])

    def forward(self, x):
        xl = self.input(x)
        xs = [F.avg_pool2d(xl, 2 ** (self.L - 1 - i)) for i in range(self.L - 1)] + [xl]
        theta = pyramid_sampling(xl)
        out = []
        for i in range(self.L):
            xp, y = self.levels[i](xs[i], theta)
            out.append(y)
            if i + 1 < self.L:
                theta = self.update[i](torch.cat([pyramid_sampling(xp), theta], 1))
        return out


class SaFHead(nn.Module):
    def __init__(self, d, ds, du, c, levels):
        super().__init__()
        self.unity = Unity(d, du, levels)
        self.semantic = Semantic(d, ds, c, levels)

    def forward(self, x):
        return self.semantic(x), self.unity(x)


def ground_truth(labels, levels, finest):
    """Y (L maps) and U (L - 1 maps) of METHODS.md's table, by brute force per cell."""
    n, hh, ww = labels.shape
    ys, us = [], []
    for i in range(levels):
        s = finest * 2 ** (levels - 1 - i)
        h, w = hh // s, ww // s
        if i == levels - 1:
            ys.append(labels[:, ::s, ::s].clone())
            break
        y = torch.full((n, h, w), IGNORE, dtype=torch.int64)
        u = torch.full((n, h, w), IGNORE, dtype=torch.int64)
        for b in range(n):
            for r in range(h):
                for q in range(w):
                    block = labels[b, r * s:(r + 1) * s, q * s:(q + 1) * s]
                    classes = set(block[block != IGNORE].tolist())
                    has_ignore = bool((block == IGNORE).any())
                    if len(classes) >= 2:
                        u[b, r, q] = 0
                    elif len(classes) == 1 and not has_ignore:
                        u[b, r, q] = 1
                        y[b, r, q] = classes.pop()
        ys.append(y)
        us.append(u)
    return ys, us


def relabel_tp(ys, us, unity_logits):
    levels = len(ys)
    for l in range(1, levels):
        h, w = ys[l].shape[1:]
        done = torch.zeros_like(ys[l], dtype=torch.bool)
        for k in range(l):
            f = 2 ** (l - k)
            tp = (us[k] == 1) & (unity_logits[k][:, 0] >= 0)
            done |= tp.repeat_interleave(f, 1).repeat_interleave(f, 2)
        ys[l][done] = IGNORE
        if l < levels - 1:
            us[l][done] = IGNORE
    return ys, us


def masked_ce(logits, target):
    valid = target != IGNORE
    if not valid.any():
        return logits.sum() * 0
    return F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum") / valid.sum()


def masked_bce(logits, target):
    valid = target != IGNORE
    if not valid.any():
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits[:, 0][valid], target[valid].double(), reduction="sum") / valid.sum()


def fuse(semantic, unity):
    levels = len(semantic)
    n, c, h, w = semantic[-1].shape
    level = torch.full((n, h, w), levels - 1, dtype=torch.int64)
    for k in reversed(range(levels - 1)):
        f = 2 ** (levels - 1 - k)
        conf = (unity[k][:, 0] >= 0).repeat_interleave(f, 1).repeat_interleave(f, 2)
        level[conf] = k
    logits = torch.zeros_like(semantic[-1])
    for k in range(levels):
        f = 2 ** (levels - 1 - k)
        up = semantic[k].repeat_interleave(f, 2).repeat_interleave(f, 3)
        logits = torch.where((level == k).unsqueeze(1), up, logits)
    return logits, logits.argmax(1), level + 1


def random_labels(gen, n, size, classes, coarse):
    """Quad-tree labels: a cell stays one class with probability 0.45, else splits."""
    labels = torch.zeros(n, size, size, dtype=torch.int64)

    def paint(b, r, q, s):
        if s == 1 or torch.rand(1, generator=gen).item() < 0.45:
            labels[b, r:r + s, q:q + s] = int(torch.randint(classes, (1,), generator=gen))
            return
        h = s // 2
        for dr in (0, h):
            for dq in (0, h):
                paint(b, r + dr, q + dq, h)

    for b in range(n):
        for r in range(0, size, coarse):
            for q in range(0, size, coarse):
                paint(b, r, q, coarse)
    holes = torch.rand(n, size, size, generator=gen) < 0.01
    labels[holes] = IGNORE
    labels[0, 40:48, 0:8] = IGNORE  # a whole ignored block
    return labels


def main():
    gen = seeded(6)
    n, d, ds, du, c, levels, finest, hw = 2, 8, 8, 4, 3, 4, 4, 16
    torch.set_default_dtype(torch.float64)
    head = SaFHead(d, ds, du, c, levels)
    with torch.no_grad():
        for name, p in head.named_parameters():  # move BN affine away from (1, 0)
            if name.endswith("bn.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bn.bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    head.train()
    x = torch.randn(n, d, hw, hw, generator=gen).requires_grad_()
    labels = random_labels(gen, n, hw * finest, c, finest * 2 ** (levels - 1))
    params = {k: v.detach().clone() for k, v in head.named_parameters()}
    semantic, unity = head(x)
    ys, us = ground_truth(labels, levels, finest)
    ys, us = relabel_tp(ys, us, [u.detach() for u in unity])
    ce = sum(masked_ce(semantic[i], ys[i]) for i in range(levels)) / levels
    bce = sum(masked_bce(unity[i], us[i]) for i in range(levels - 1)) / (levels - 1)
    (ce + bce).backward()
    fused_logits, fused_labels, level_map = fuse([s.detach() for s in semantic], [u.detach() for u in unity])

    out = {"x": x.detach().float(), "labels": labels.int(), "dx": x.grad.float(),
           "ce": torch.tensor([ce.item()]).float(), "bce": torch.tensor([bce.item()]).float(),
           "fused_logits": fused_logits.float(), "fused_labels": fused_labels.int(),
           "level_map": level_map.int()}
    for i in range(levels):
        out["semantic.%d" % i] = semantic[i].detach().float()
        out["target_y.%d" % i] = ys[i].int()
        if i + 1 < levels:
            out["unity.%d" % i] = unity[i].detach().float()
            out["target_u.%d" % i] = us[i].int()
    for name, p in head.named_parameters():
        out["param." + name] = params[name].float()
        out["grad." + name] = p.grad.float()
    for name, b in head.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out["buffer." + name] = b.float()
    units = sum(int((u == 1).sum()) for u in us)
    print("ce %.6f bce %.6f  unit cells after relabel %d  levels used %s" %
          (ce.item(), bce.item(), units, torch.bincount(level_map.flatten()).tolist()))
    write_safetensors(golden_path("saf"), out, {"levels": levels, "finest_stride": finest,
                                                 "D": d, "D_s": ds, "D_u": du, "classes": c})


if __name__ == "__main__":
    main()
