#!/usr/bin/env python3
"""Golden values for segkit's optimizers (include/segkit/train/optimizer.hpp): torch.optim.SGD
and torch.optim.AdamW (single-tensor path, foreach=False) over three steps.

Each case has two parameters, "w" [3, 4, 5] and "b" [7], in two parameter groups so that "b"
can have its weight decay switched off (segkit's weight-decay predicate). The learning rate
changes between steps (set in the param groups, as a schedule would), to check set_lr.
Stored per case C and parameter P:
  C.P.param.0           the initial value
  C.P.grad.k            the gradient fed to step k (k = 1, 2, 3)
  C.P.param.k           the value after step k
  C.P.<state>           the optimizer state after step 3 (momentum_buffer / exp_avg /
                        exp_avg_sq / max_exp_avg_sq), with PyTorch's state names
Metadata C.<option> holds the hyper-parameters as Python reprs (lrs comma separated).
Usage: /usr/bin/python3 tests/reference/gen_optimizer.py
"""
import torch

from golden import golden_path, seeded, write_safetensors

SHAPES = {"w": (3, 4, 5), "b": (7,)}
LRS = [0.1, 0.08, 0.05]

CASES = [
    # name, kind, options, decay the bias?
    ("sgd_momentum", "sgd", dict(momentum=0.9, weight_decay=1e-4, nesterov=False), True),
    ("sgd_nesterov", "sgd", dict(momentum=0.9, weight_decay=1e-4, nesterov=True), True),
    ("sgd_dampening_nodecay_bias", "sgd", dict(momentum=0.9, dampening=0.25, weight_decay=1e-2),
     False),
    ("sgd_plain", "sgd", dict(momentum=0.0, weight_decay=1e-4), True),
    ("adamw", "adamw", dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), True),
    ("adamw_amsgrad_nodecay_bias", "adamw",
     dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True), False),
]


def run_case(name, kind, options, decay_bias, tensors, metadata):
    params = {p: torch.randn(s, dtype=torch.float32) for p, s in SHAPES.items()}
    for p, value in params.items():
        tensors[f"{name}.{p}.param.0"] = value.clone()
    w = torch.nn.Parameter(params["w"].clone())
    b = torch.nn.Parameter(params["b"].clone())
    wd = options["weight_decay"]
    groups = [{"params": [w]}, {"params": [b], "weight_decay": wd if decay_bias else 0.0}]
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=LRS[0], foreach=False, **options)
    else:
        opt = torch.optim.AdamW(groups, lr=LRS[0], foreach=False, **options)
    for k, lr in enumerate(LRS, start=1):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, param in (("w", w), ("b", b)):
            # Gradients of a few orders of magnitude, so Adam's second moment matters.
            param.grad = torch.randn(SHAPES[p]) * (10.0 ** torch.randint(-3, 1, SHAPES[p]))
            tensors[f"{name}.{p}.grad.{k}"] = param.grad.clone()
        opt.step()
        for p, param in (("w", w), ("b", b)):
            tensors[f"{name}.{p}.param.{k}"] = param.detach().clone()
    for p, param in (("w", w), ("b", b)):
        for key, value in opt.state[param].items():
            if key != "step" and value is not None:
                tensors[f"{name}.{p}.{key}"] = value.clone()
    metadata[f"{name}.kind"] = kind
    metadata[f"{name}.lrs"] = ",".join(repr(lr) for lr in LRS)
    metadata[f"{name}.decay_bias"] = "1" if decay_bias else "0"
    for key, value in options.items():
        if key == "betas":
            metadata[f"{name}.beta1"], metadata[f"{name}.beta2"] = repr(value[0]), repr(value[1])
        else:
            metadata[f"{name}.{key}"] = repr(float(value)) if not isinstance(value, bool) else (
                "1" if value else "0")


def main():
    seeded(2024)
    tensors, metadata = {}, {"cases": ",".join(c[0] for c in CASES), "torch": torch.__version__}
    for case in CASES:
        run_case(*case, tensors, metadata)
    write_safetensors(golden_path("optimizer"), tensors, metadata)


if __name__ == "__main__":
    main()
