"""Shared helpers for the golden-file generators in tests/reference/.

Each gen_<op>.py computes reference values with PyTorch (Debian's python3-torch, CPU) and
writes tests/golden/<op>.safetensors through write_safetensors below. The safetensors format
is written by hand (an 8-byte little-endian header length, a JSON header, raw little-endian
data) because Debian ships no `safetensors` Python package; read_safetensors is its inverse
and lets the scripts check files that segkit wrote.
"""
import json
import os
import struct

import numpy as np
import torch

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")

_DTYPES = {
    torch.float32: ("F32", np.float32),
    torch.float64: ("F64", np.float64),
    torch.int64: ("I64", np.int64),
    torch.int32: ("I32", np.int32),
    torch.uint8: ("U8", np.uint8),
}
_NUMPY_BY_NAME = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
                  "U8": np.uint8, "I8": np.int8, "F16": np.float16, "BOOL": np.bool_}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch.Tensor (float32 / int32 / uint8 / int64 / float64)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        code, np_type = _DTYPES[t.dtype]
        raw = t.numpy().astype(np_type, copy=False).astype(np.dtype(np_type).newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    base = 8 + length
    result = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[base + begin:base + end], dtype=_NUMPY_BY_NAME[info["dtype"]])
        result[name] = torch.from_numpy(array.reshape(info["shape"]).copy())
    return result


def golden_path(op_name):
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    return os.path.join(GOLDEN_DIR, op_name + ".safetensors")


def seeded(seed):
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
