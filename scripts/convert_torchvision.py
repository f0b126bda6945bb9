#!/usr/bin/env python3
"""Convert torchvision ResNet weights to a safetensors file with segkit's names.

segkit's models::resnet uses torchvision's state_dict names exactly (conv1.weight,
bn1.running_mean, layer1.0.conv1.weight, layer2.0.downsample.0.weight, ...), so the conversion
drops the classifier (fc.*), keeps every other entry (float32 as F32, num_batches_tracked as I64)
and optionally prepends a prefix.

  # a .pth state_dict (e.g. ~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth)
  /usr/bin/python3 scripts/convert_torchvision.py resnet18-f37072fd.pth resnet18.safetensors
  # torchvision's pretrained weights (downloaded by torchvision into its cache, if reachable)
  /usr/bin/python3 scripts/convert_torchvision.py --arch resnet50 --pretrained resnet50.safetensors

Load in C++ (file names have no prefix; the model's backbone sits under "backbone."):
  train::load_module_weights("resnet18.safetensors", backbone);          // a models::resnet
  train::load_module_weights("resnet18.safetensors", model,               // a models::fcn
                             {/*strict=*/true, /*module_prefix=*/"backbone.", /*file_prefix=*/""});
or write the prefix into the file with --prefix backbone. and load the whole model with
strict = false (the heads are then reported as missing).
Requires torch (Debian: python3-torch; python3-torchvision only for --pretrained).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

_CODES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8"), torch.float64: ("F32", "<f4"),
          torch.float16: ("F32", "<f4")}


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype not in _CODES:
            raise SystemExit(f"{name}: unsupported dtype {t.dtype}")
        code, np_type = _CODES[t.dtype]
        raw = t.numpy().astype(np_type).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="[INPUT.pth] OUTPUT.safetensors")
    parser.add_argument("--arch", help="resnet18 / resnet34 / resnet50 / resnet101 (with --pretrained)")
    parser.add_argument("--pretrained", action="store_true", help="torchvision's ImageNet weights")
    parser.add_argument("--prefix", default="", help='prepended to every name, e.g. "backbone."')
    args = parser.parse_args()
    if args.pretrained:
        if len(args.inputs) != 1 or not args.arch:
            parser.error("--pretrained takes --arch and one OUTPUT")
        import torchvision
        state = getattr(torchvision.models, args.arch)(weights="DEFAULT").state_dict()
        source = f"torchvision.models.{args.arch}(weights='DEFAULT')"
    else:
        if len(args.inputs) != 2:
            parser.error("expected INPUT.pth OUTPUT.safetensors")
        state = torch.load(args.inputs[0], map_location="cpu")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            state = state.state_dict()  # a whole pickled module
        source = os.path.basename(args.inputs[0])
    out = {}
    for name, value in state.items():
        if name.startswith("fc."):
            continue
        if not torch.is_tensor(value):
            continue
        if name.endswith("num_batches_tracked"):
            value = value.reshape(1).to(torch.int64)  # segkit's counter is a [1] I64 tensor
        out[args.prefix + name] = value
    if not any(n.endswith("layer4.0.conv1.weight") for n in out):
        sys.exit("input does not look like a torchvision ResNet state_dict (no layer4.0.conv1.weight)")
    write_safetensors(args.inputs[-1], out, {"source": source, "converter": "scripts/convert_torchvision.py"})
    print(f"wrote {args.inputs[-1]}: {len(out)} tensors (fc dropped)")


if __name__ == "__main__":
    main()
