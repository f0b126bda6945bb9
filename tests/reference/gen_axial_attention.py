"""Golden values for ops/axial_attention.hpp, written the way a PyTorch user writes axial
attention (einsum + softmax, multi-head): column (H-axis) attention first, then row (W-axis)
attention applied to its result, both maps from the same q and k, scale 1/sqrt(C/heads).
Outputs and the gradients of q, k, v for a random output gradient dO.
Run: /usr/bin/python3 tests/reference/gen_axial_attention.py
"""
import os

import torch

from golden import GOLDEN_DIR, write_safetensors


def axial_attention(q, k, v, heads):
    n, c, h, w = q.shape
    d = c // heads
    scale = d ** -0.5
    q = q.view(n, heads, d, h, w)
    k = k.view(n, heads, d, h, w)
    v = v.view(n, heads, d, h, w)
    # column attention: for each column w, queries i and keys j run over H
    a_col = torch.softmax(torch.einsum("nediw,nedjw->newij", q, k) * scale, dim=-1)
    y1 = torch.einsum("newij,nedjw->nediw", a_col, v)
    # row attention on the column result: for each row i, queries a and keys b run over W
    a_row = torch.softmax(torch.einsum("nedia,nedib->neiab", q, k) * scale, dim=-1)
    out = torch.einsum("neiab,nedib->nedia", a_row, y1)
    return out.reshape(n, c, h, w)


def main():
    torch.manual_seed(4)
    tensors = {}
    cases = [("a", 2, 8, 5, 7, 4), ("b", 1, 6, 4, 3, 1), ("c", 1, 32, 6, 9, 2)]
    for name, n, c, h, w, heads in cases:
        q = torch.randn(n, c, h, w, requires_grad=True)
        k = torch.randn(n, c, h, w, requires_grad=True)
        v = torch.randn(n, c, h, w, requires_grad=True)
        out = axial_attention(q, k, v, heads)
        d_out = torch.randn_like(out)
        out.backward(d_out)
        for key, value in [("q", q), ("k", k), ("v", v), ("out", out), ("d_out", d_out),
                           ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)]:
            tensors[f"{name}.{key}"] = value.detach().float()
        tensors[f"{name}.heads"] = torch.tensor([heads], dtype=torch.int32)
    write_safetensors(os.path.join(GOLDEN_DIR, "axial_attention.safetensors"), tensors,
                      {"generator": "tests/reference/gen_axial_attention.py",
                       "torch": torch.__version__})


if __name__ == "__main__":
    main()
