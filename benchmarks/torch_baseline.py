#!/usr/bin/env python3
"""PyTorch baselines for segkit's benchmarks, timed the way a PyTorch user writes the code.

Usage:
  torch_baseline.py matmul M N K [--threads T]
  torch_baseline.py pyramid_fuse N C H W LEVELS labels|logits [--threads T]
  torch_baseline.py conv2d N C H W COUT KH KW STRIDE PAD DILATION GROUPS fwd|fwdbwd [--threads T]
  torch_baseline.py attention2d N D DV L S fwd|fwdbwd [--threads T]
  torch_baseline.py pyramid_sampling N C H W 1,3,6,8 fwd|fwdbwd [--threads T]
  torch_baseline.py ocr_gather N K C H W fwd|fwdbwd [--threads T]
Prints one JSON line: {"op": ..., "median_ms": ..., "threads": ..., "mkldnn": ..., ...}.
Warm-up runs first, then the median of timed repeats (each repeat long enough to time).
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def timed(fn, min_seconds=0.2, repeats=7):
    start = time.perf_counter()
    fn()  # warm-up (allocator, oneDNN primitive creation)
    once = max(time.perf_counter() - start, 1e-6)
    if once < 0.5:
        for _ in range(2):
            fn()
    else:  # slow baselines (e.g. reference BLAS): fewer repeats keep the run short
        repeats = 3
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    inner = max(1, int(min_seconds / once / repeats))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples) * 1e3


def attention2d_baseline(n, d, dv, l, s, mode):
    """Attention2D as a PyTorch user writes it: Q [N,d,L], K [N,d,S], V [N,dv,S];
    softmax(Q^T K / sqrt(d)) @ V^T, transposed back to [N,dv,L]."""
    q, k, v = torch.randn(n, d, l), torch.randn(n, d, s), torch.randn(n, dv, s)
    scale = d ** -0.5

    def forward():
        p = torch.softmax(scale * q.transpose(1, 2) @ k, dim=-1)
        return (p @ v.transpose(1, 2)).transpose(1, 2)

    if mode == "fwd":
        with torch.no_grad():
            return timed(forward)
    for t in (q, k, v):
        t.requires_grad_()
    dy = torch.randn(n, dv, l)

    def forward_backward():
        q.grad = k.grad = v.grad = None
        forward().backward(dy)

    return timed(forward_backward)


def axial_attention_baseline(n, c, h, w, heads, mode):
    """HFGD's axial attention as a PyTorch user writes it (einsum + softmax, multi-head):
    column (H-axis) attention first, then row attention on its result, same q and k."""
    q, k, v = (torch.randn(n, c, h, w) for _ in range(3))
    d = c // heads
    scale = d ** -0.5

    def forward():
        qh, kh, vh = (t.view(n, heads, d, h, w) for t in (q, k, v))
        a_col = torch.softmax(torch.einsum("nediw,nedjw->newij", qh, kh) * scale, dim=-1)
        y1 = torch.einsum("newij,nedjw->nediw", a_col, vh)
        a_row = torch.softmax(torch.einsum("nedia,nedib->neiab", qh, kh) * scale, dim=-1)
        return torch.einsum("neiab,nedib->nedia", a_row, y1).reshape(n, c, h, w)

    if mode == "fwd":
        with torch.no_grad():
            return timed(forward, repeats=3)
    for t in (q, k, v):
        t.requires_grad_()
    dy = torch.randn(n, c, h, w)

    def forward_backward():
        q.grad = k.grad = v.grad = None
        forward().backward(dy)

    return timed(forward_backward, repeats=3)


def pyramid_fuse_baseline(n, c, h, w, levels, with_logits):
    """SaF Eq. 2 as a PyTorch user writes it: F.interpolate(nearest) every level to the finest
    size, sigmoid, >= tau, products of indicators, sum, argmax (levels 2x apart, tau = 0.5)."""
    semantic = [torch.randn(n, c, h >> s, w >> s) for s in range(levels - 1, -1, -1)]
    unity = [torch.randn(n, 1, h >> s, w >> s) for s in range(levels - 1, 0, -1)]

    def forward():
        size = (h, w)
        fused = torch.zeros(n, c, h, w)
        level = torch.zeros(n, 1, h, w)
        still = torch.ones(n, 1, h, w)
        for l, y in enumerate(semantic):
            if l < levels - 1:
                conf = (torch.sigmoid(F.interpolate(unity[l], size=size, mode="nearest")) >= 0.5).float()
            else:
                conf = torch.ones(n, 1, h, w)
            fused = fused + still * conf * F.interpolate(y, size=size, mode="nearest")
            level = level + still * conf * (l + 1)
            still = still * (1 - conf)
        labels = fused.argmax(dim=1)
        return (labels, level, fused) if with_logits == "logits" else (labels, level)

    with torch.no_grad():
        return timed(forward)


def pyramid_sampling_baseline(n, c, h, w, sizes, mode):
    """ANL / SaF PyramidSampling as a PyTorch user writes it: one adaptive_avg_pool2d per size,
    flattened and concatenated (sizes given as "1,3,6,8")."""
    sizes = [int(v) for v in str(sizes).split(",")]
    x = torch.randn(n, c, h, w)

    def forward():
        return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in sizes], 2)

    if mode == "fwd":
        with torch.no_grad():
            return timed(forward)
    x.requires_grad_()
    dy = torch.randn(n, c, sum(s * s for s in sizes))

    def forward_backward():
        x.grad = None
        forward().backward(dy)

    return timed(forward_backward)


def ocr_gather_baseline(n, k, c, h, w, mode):
    """OCR's SpatialGather_Module as its authors write it: softmax over pixels, matmul."""
    regions, feats = torch.randn(n, k, h, w), torch.randn(n, c, h, w)

    def forward():
        probs = F.softmax(regions.view(n, k, -1), dim=2)
        return torch.matmul(probs, feats.view(n, c, -1).permute(0, 2, 1))

    if mode == "fwd":
        with torch.no_grad():
            return timed(forward)
    regions.requires_grad_()
    feats.requires_grad_()
    dy = torch.randn(n, k, c)

    def forward_backward():
        regions.grad = feats.grad = None
        forward().backward(dy)

    return timed(forward_backward)


def main(argv):
    threads = None
    if "--threads" in argv:
        at = argv.index("--threads")
        threads = int(argv[at + 1])
        del argv[at:at + 2]
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    op, args = argv[0], [int(a) if a.lstrip("-").isdigit() else a for a in argv[1:]]
    info = {"op": op, "args": argv[1:], "threads": torch.get_num_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(), "torch": torch.__version__}
    with torch.no_grad() if op == "matmul" else torch.enable_grad():
        if op == "matmul":
            m, n, k = args[:3]
            a, b = torch.randn(m, k), torch.randn(k, n)
            info["median_ms"] = timed(lambda: torch.matmul(a, b))
        elif op == "conv2d":
            n, c, h, w, co, kh, kw, stride, pad, dil, groups, mode = args[:12]
            x = torch.randn(n, c, h, w, requires_grad=(mode == "fwdbwd"))
            weight = torch.randn(co, c // groups, kh, kw, requires_grad=(mode == "fwdbwd"))
            bias = torch.randn(co)

            def forward():
                return F.conv2d(x, weight, bias, stride=stride, padding=pad, dilation=dil,
                                groups=groups)

            if mode == "fwd":
                with torch.no_grad():
                    info["median_ms"] = timed(forward)
            else:
                dy = torch.randn_like(forward())

                def forward_backward():
                    x.grad = None
                    weight.grad = None
                    forward().backward(dy)

                info["median_ms"] = timed(forward_backward)
        elif op == "pyramid_fuse":
            info["median_ms"] = pyramid_fuse_baseline(*args[:6])
        elif op == "attention2d":
            info["median_ms"] = attention2d_baseline(*args[:6])
        elif op == "axial_attention":
            info["median_ms"] = axial_attention_baseline(*args[:6])
        elif op == "pyramid_sampling":
            info["median_ms"] = pyramid_sampling_baseline(*args[:6])
        elif op == "ocr_gather":
            info["median_ms"] = ocr_gather_baseline(*args[:6])
        else:
            raise SystemExit("unknown op " + op)
    print(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1:])
