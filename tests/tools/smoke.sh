#!/usr/bin/env bash
# The tools as a new user runs them, on generated scenes (seconds, no data files):
# train, stop, resume (the result must equal an uninterrupted run tensor for tensor),
# evaluate the checkpoint, segment an image, and reject bad command lines with exit 2.
# Usage: smoke.sh BIN_DIR WORK_DIR
set -euo pipefail
bin=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

common=(--dataset synthetic --synthetic-count 16 --synthetic-size 64x64 --model fcn-resnet18-w25
        --crop 64x64 --batch 2 --iters 6 --eval-every 3 --eval-images 2 --checkpoint-every 3
        --progress lines --log-every 1 --threads 2)
"$bin/segkit_train" "${common[@]}" --out "$work/straight"
"$bin/segkit_train" "${common[@]}" --out "$work/split" --stop-after 3
"$bin/segkit_train" "${common[@]}" --out "$work/split" --resume

# Every tensor of the resumed run equals the uninterrupted run's, byte for byte.
python3 - "$work/straight/last.safetensors" "$work/split/last.safetensors" <<'PY'
import json, struct, sys
def tensors(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    body = blob[8 + n:]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
diff = [k for k in a if a[k] != b[k]]
assert not diff, "resumed run differs in " + ", ".join(diff[:5])
print(f"resume: {len(a)} tensors identical to the uninterrupted run")
PY
for f in config.conf metrics.csv eval.csv metrics.jsonl best.safetensors; do
  test -s "$work/split/$f" || { echo "missing $work/split/$f"; exit 1; }
done

"$bin/segkit_eval" --dataset synthetic --synthetic-count 3 --synthetic-size 64x64 \
  --checkpoint "$work/straight/last.safetensors" --scales 0.75,1 --flip --json "$work/eval.json" --quiet
grep -q '"miou"' "$work/eval.json"

python3 - "$work/input.png" <<'PY'
import struct, sys, zlib
w, h = 48, 40
rows = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 5 % 256, y * 6 % 256, 128))
               for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
       chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open(sys.argv[1], "wb").write(png)
PY
"$bin/segkit_infer" --checkpoint "$work/straight/last.safetensors" --out "$work/pred" "$work/input.png"
test -s "$work/pred/input_labels.png" && test -s "$work/pred/input_overlay.png"

# SaF through the tools: an ablation chosen by --options (kept in the checkpoint and read back
# by segkit_eval), the preview picture with the level map, the per-level report.
saf=(--dataset synthetic --synthetic-count 8 --synthetic-size 64x64 --model saf-resnet18-w25
     --crop 64x64 --batch 2 --iters 3 --eval-every 3 --eval-images 2 --progress lines --threads 2)
"$bin/segkit_train" "${saf[@]}" --options "ablation=G,tau=0.4" --preview 1 --out "$work/saf"
grep -q "options = ablation=G,tau=0.4" "$work/saf/config.conf"
test -s "$work/saf/preview_0.png"
"$bin/segkit_eval" --dataset synthetic --synthetic-count 2 --synthetic-size 64x64 \
  --checkpoint "$work/saf/last.safetensors" --saf-levels --quiet > "$work/saf_eval.txt"
grep -q "level 4" "$work/saf_eval.txt"
grep -q "pixels answered" "$work/saf_eval.txt"

# Bad command lines: exit 2 with a message naming the value.
expect_exit() {  # expect_exit CODE PATTERN command...
  local code=$1 pattern=$2
  shift 2
  set +e
  "$@" >"$work/out.txt" 2>&1
  local got=$?
  set -e
  if [ "$got" -ne "$code" ] || ! grep -q -- "$pattern" "$work/out.txt"; then
    echo "expected exit $code and \"$pattern\" from: $*"; cat "$work/out.txt"; exit 1
  fi
}
expect_exit 2 "0x5" "$bin/segkit_train" "${common[@]}" --crop 0x5 --out "$work/bad"
expect_exit 2 "no-such-model" "$bin/segkit_train" "${common[@]}" --model no-such-model --out "$work/bad"
expect_exit 2 "camvd" "$bin/segkit_train" --dataset camvd --out "$work/bad"
expect_exit 1 "/no/such/folder" "$bin/segkit_train" --dataset camvid --data-root /no/such/folder --out "$work/bad"
expect_exit 1 "missing.safetensors" "$bin/segkit_eval" --dataset synthetic --checkpoint "$work/missing.safetensors"
expect_exit 2 "tau" "$bin/segkit_train" "${saf[@]}" --options "tau=1.5" --out "$work/bad"
expect_exit 2 "colour" "$bin/segkit_train" "${saf[@]}" --options "colour=red" --out "$work/bad"
expect_exit 2 "takes no options" "$bin/segkit_train" "${common[@]}" --options "tau=0.5" --out "$work/bad"
# Every shipped configuration parses and names a known model and dataset: the real datasets
# stop at their missing folder (exit 1), the synthetic ones train one step.
root=$(cd "$(dirname "$0")/../.." && pwd)
for conf in "$root"/examples/configs/*/*.conf; do
  case "$conf" in
    */synthetic.conf)
      "$bin/segkit_train" --config "$conf" --iters 1 --eval-images 1 --preview 0 \
        --synthetic-count 2 --synthetic-size 64x64 --crop 64x64 --batch 2 --progress lines \
        --out "$work/config" >/dev/null ;;
    *) expect_exit 1 "/no/such/folder" "$bin/segkit_train" --config "$conf" \
         --data-root /no/such/folder --out "$work/config" ;;
  esac
done
echo "tools smoke test: passed"
