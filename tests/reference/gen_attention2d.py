"""Golden values for ops::attention2d: PyTorch's matmul-softmax-matmul as a user writes it.

Q [N, d, L], K [N, d, S], V [N, dv, S] (NCHW maps with the spatial axes flattened); heads
split the channels by view. O = (softmax(scale * Q^T K, dim=-1) @ V^T)^T; gradients for a
random dO. Cases: SaF (S = 110 pooled positions, scale 1/sqrt(d)), full self-attention with
no scaling (HFGD's CAE, S = L over several 512-key tiles), and multi-head.
Run: python3 tests/reference/gen_attention2d.py -> tests/golden/attention2d.safetensors
"""
import math
import os

import torch

from golden import GOLDEN_DIR, write_safetensors


def attention(q, k, v, heads, scale):
    n, d, l = q.shape
    s, dv = k.shape[2], v.shape[1]
    qh = q.reshape(n * heads, d // heads, l)
    kh = k.reshape(n * heads, d // heads, s)
    vh = v.reshape(n * heads, dv // heads, s)
    p = torch.softmax(scale * qh.transpose(1, 2) @ kh, dim=-1)  # [B, L, S], softmax over keys
    return (p @ vh.transpose(1, 2)).transpose(1, 2).reshape(n, dv, l)


def case(out, prefix, n, d, dv, l, s, heads, scale, gen):
    q = torch.randn(n, d, l, generator=gen, dtype=torch.float64).requires_grad_()
    k = torch.randn(n, d, s, generator=gen, dtype=torch.float64).requires_grad_()
    v = torch.randn(n, dv, s, generator=gen, dtype=torch.float64).requires_grad_()
    d_o = torch.randn(n, dv, l, generator=gen, dtype=torch.float64)
    o = attention(q, k, v, heads, scale)
    o.backward(d_o)
    for name, t in [("q", q), ("k", k), ("v", v), ("do", d_o), ("o", o), ("dq", q.grad),
                    ("dk", k.grad), ("dv", v.grad)]:
        out[f"{prefix}.{name}"] = t.detach().float()
    out[f"{prefix}.params"] = torch.tensor([float(heads), scale], dtype=torch.float32)


def main():
    gen = torch.Generator().manual_seed(2026)
    out = {}
    case(out, "saf", 1, 16, 12, 150, 110, 1, 1 / math.sqrt(16), gen)
    case(out, "full", 1, 4, 4, 560, 560, 1, 1.0, gen)
    case(out, "heads", 2, 12, 8, 70, 110, 4, 1 / math.sqrt(3), gen)
    write_safetensors(os.path.join(GOLDEN_DIR, "attention2d.safetensors"), out,
                      {"generator": "tests/reference/gen_attention2d.py", "torch": torch.__version__})


if __name__ == "__main__":
    main()
