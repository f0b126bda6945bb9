#!/usr/bin/env python3
"""Checkpoint interop between PyTorch and segkit (include/segkit/train/checkpoint.hpp).

  /usr/bin/python3 tests/reference/checkpoint_roundtrip.py
      PyTorch -> segkit: builds nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)) with a fixed
      seed, runs one training-mode forward on input_x() so the BatchNorm statistics move, and
      writes its state_dict to tests/golden/checkpoint_from_torch.safetensors (num_batches_tracked
      stays int64 -> I64). tests/test_checkpoint.cpp loads it and recomputes the running
      statistics from the loaded convolution and the same input formula.

  /usr/bin/python3 tests/reference/checkpoint_roundtrip.py verify <file>
      segkit -> PyTorch: reads a checkpoint that tests/test_checkpoint.cpp wrote (run it with
      SEGKIT_CHECKPOINT_EXPORT=<file>), loads the module part into the same torch module with
      load_state_dict(strict=True), and checks every tensor against the file and against
      expected_value(), the formula the C++ test filled the module and optimizer with.
"""
import json
import os
import struct
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import golden_path, read_safetensors, write_safetensors  # noqa: E402


def make_module():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def input_x():
    """(2, 3, 6, 6), exact in float: tests/test_checkpoint.cpp recomputes it."""
    i = torch.arange(2 * 3 * 6 * 6, dtype=torch.int64)
    return (((i * 7) % 23 - 11).to(torch.float32) * 0.125).reshape(2, 3, 6, 6)


def expected_value(name_index, numel):
    """The values the C++ test writes into tensor number `name_index` (its sorted position
    among the float tensors): exact in float."""
    i = torch.arange(numel, dtype=torch.int64)
    return ((i * 5 + name_index * 3) % 19 - 9).to(torch.float32) * 0.0625 + name_index


def generate():
    torch.manual_seed(1234)
    model = make_module()
    with torch.no_grad():  # non-default affine parameters, so a swap with another slot shows
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    model.train()
    model(input_x())
    state = model.state_dict()
    assert state["1.num_batches_tracked"].dtype == torch.int64
    path = golden_path("checkpoint_from_torch")
    write_safetensors(path, state, metadata={"format": "pt", "generator": "checkpoint_roundtrip.py"})
    back = read_safetensors(path)
    for name, t in state.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name].reshape(t.shape), t), name
    print("wrote", path, os.path.getsize(path), "bytes:", ", ".join(sorted(state)))


def read_metadata(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length)).get("__metadata__", {})


def verify(path):
    tensors = read_safetensors(path)
    metadata = read_metadata(path)
    assert metadata.get("format") == "segkit-checkpoint", metadata
    assert metadata.get("version") == "1", metadata
    module_part = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    optimizer_part = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}

    model = make_module()
    result = model.load_state_dict(module_part, strict=True)
    print("load_state_dict(strict=True):", result)
    state = model.state_dict()
    assert sorted(state) == sorted(module_part), (sorted(state), sorted(module_part))

    float_names = sorted(n for n, t in tensors.items() if t.dtype == torch.float32)
    checked = 0
    for name, t in state.items():
        stored = module_part[name]
        assert t.dtype == stored.dtype, (name, t.dtype, stored.dtype)
        assert torch.equal(t, stored.reshape(t.shape)), name
        if t.dtype == torch.float32:
            want = expected_value(float_names.index(name), t.numel()).reshape(t.shape)
        else:
            want = torch.tensor(7, dtype=torch.int64)  # num_batches_tracked set by the C++ test
        assert torch.equal(t, want), (name, t, want)
        print(f"  {name:36s} {str(t.dtype):14s} {str(list(t.shape)):14s} equal")
        checked += 1
    for name, t in sorted(optimizer_part.items()):
        if t.dtype == torch.float32:
            param = name[len("optimizer."):].rsplit(".", 1)[0]
            assert t.shape == state[param].shape, (name, t.shape, state[param].shape)
            want = expected_value(float_names.index(name), t.numel()).reshape(t.shape)
            assert torch.equal(t, want), name
            what = "equal to the formula"
        else:
            what = f"value {t.tolist()}"
        print(f"  {name:36s} {str(t.dtype):14s} {str(list(t.shape)):14s} {what}")
    model.eval()
    y = model(input_x())
    assert torch.isfinite(y).all()
    print(f"verify {path}: {checked} module tensors equal after load_state_dict(strict=True), "
          f"{len(optimizer_part)} optimizer tensors checked, metadata {metadata}; OK")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "verify":
        verify(sys.argv[2])
    elif len(sys.argv) == 1:
        generate()
    else:
        sys.exit(__doc__)
