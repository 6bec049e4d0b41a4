#!/usr/bin/env bash
# The vision tower and image inputs on a tiny synthetic checkpoint with a vision tower (spec §4):
#  - `mimo vision` embeddings of PNG/JPEG images against vision_ref.py (numpy, float64, written from the spec:
#    dense masked attention, argsort reorders), in both sink placements and both merger norms, which must differ;
#    and from patch rows given directly (--patches);
#  - `mimo logits --image` (the placeholder expanded to the image's tokens, whose rows are the tower's output)
#    against tools/reference/np_reference.py fed the same rows, one-shot and in chunks that cut the image, and at
#    TP-2 in one process and over two processes (node 0 sends the rows);
#  - refusals that name what is wrong (an unreadable image, a text-only model, placeholders and images that do not
#    pair up).
source "$(dirname "$0")/../cli/lib.sh"
PY=/usr/bin/python3
REF="$PY $MIMO_SRC/tests/model/vision_ref.py"
M="$work/m"
"$MIMO_BIN" synth --out "$M" --preset tiny --seed 3 2>/dev/null || { echo "synth failed"; exit 1; }
$PY - "$work" <<'PY' || { echo "FAIL making the test images (python3-pil)"; exit 1; }
import sys
import numpy as np
from PIL import Image
d = sys.argv[1]
r = np.random.default_rng(7)
Image.fromarray(r.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(f"{d}/a.png")
x = np.zeros((64, 40, 3), np.uint8); x[:, :20] = (200, 30, 30); x[:, 20:] = (20, 40, 220)
x += r.integers(0, 20, x.shape, dtype=np.uint8)
Image.fromarray(x).save(f"{d}/b.jpg", quality=90)
a = r.integers(0, 256, (24, 30, 4), dtype=np.uint8)
Image.fromarray(a, "RGBA").save(f"{d}/c.png")
open(f"{d}/bad.png", "wb").write(open(f"{d}/a.png", "rb").read()[:200])
PY
grids() { sed -n 's/.*"grid_h": \([0-9]*\), "grid_w": \([0-9]*\).*/\1x\2/p' "$1" | paste -sd, -; }

# 1. embeddings of images, default placement (sink on key 0, LayerNorm merger)
if "$MIMO_BIN" vision --model "$M" --image "$work/a.png,$work/b.jpg,$work/c.png" --out "$work/e.bin" \
  --patches-out "$work/p.bin" >"$work/info" 2>"$work/err"; then
  g=$(grids "$work/info")
  out=$($REF "$M" "$work/p.bin" "$work/e.bin" "$g" key0 layer) && ok "vision key0/layer, grids $g: $(echo $out)" ||
    bad "vision key0/layer against the reference: $out"
else
  bad "mimo vision: $(cat "$work/err")"
fi
# 2. the other placements: each against the reference, and each changes the result
for mode in "denominator layer" "key0 rms" "denominator rms"; do
  set -- $mode
  if "$MIMO_BIN" vision --model "$M" --image "$work/a.png" --vision-sink $1 --vision-merger-norm $2 \
    --out "$work/e_$1_$2.bin" --patches-out "$work/pa.bin" >"$work/info" 2>"$work/err"; then
    g=$(grids "$work/info")
    out=$($REF "$M" "$work/pa.bin" "$work/e_$1_$2.bin" "$g" $1 $2) && ok "vision $1/$2: $(echo $out)" ||
      bad "vision $1/$2 against the reference: $out"
    d=$($PY -c "import numpy as n,sys;a=n.fromfile(sys.argv[1],'<f4');b=n.fromfile(sys.argv[2],'<f4')[:a.size];print(abs(a-b).max()/abs(b).max())" \
      "$work/e_$1_$2.bin" "$work/e.bin")
    $PY -c "import sys;sys.exit(0 if float(sys.argv[1])>1e-3 else 1)" "$d" && ok "vision $1/$2 differs from key0/layer (rel $d)" ||
      bad "vision $1/$2 gives what key0/layer gives (rel $d): the option does nothing"
  else
    bad "mimo vision $1/$2: $(cat "$work/err")"
  fi
done
# 3. patch rows given directly (grid 6x4: both sides multiples of the merge size)
$PY -c "import numpy as n;n.random.default_rng(1).standard_normal(6*4*96).astype('<f4').tofile('$work/pr.bin')"
if "$MIMO_BIN" vision --model "$M" --patches "$work/pr.bin" --grid 6x4 --out "$work/er.bin" >/dev/null 2>"$work/err"; then
  out=$($REF "$M" "$work/pr.bin" "$work/er.bin" 6x4 key0 layer) && ok "vision --patches: $(echo $out)" ||
    bad "vision --patches against the reference: $out"
else
  bad "mimo vision --patches: $(cat "$work/err")"
fi

# 4. logits with an image against the numpy text model fed the same rows
IMG=$($PY -c "import json;print(json.load(open('$M/config.json'))['image_token_id'])")
V=$($PY -c "import json;print(json.load(open('$M/config.json'))['vocab_size'])")
"$MIMO_BIN" vision --model "$M" --image "$work/a.png" --out "$work/ea.bin" >"$work/info" 2>/dev/null
n=$(sed -n 's/.*"tokens": \([0-9]*\).*/\1/p' "$work/info")
pre="11,22,33"; post="44,55,66,77"
expanded="$pre,$($PY -c "print(','.join(['$IMG']*$n))"),$post"
$PY "$MIMO_SRC/tools/reference/np_reference.py" --model "$M" --tokens "$expanded" --embeds "$work/ea.bin" \
  --embeds-at 3 --out "$work/ref.f32" >/dev/null || bad "np_reference with the image rows"
for chunk in 0 5 16; do
  if "$MIMO_BIN" logits --model "$M" --backend cpu --tokens "$pre,$IMG,$post" --image "$work/a.png" --chunk $chunk \
    --out "$work/l$chunk.f32" 2>"$work/err"; then
    out=$($PY "$MIMO_SRC/tests/model/compare_logits.py" "$work/l$chunk.f32" "$work/ref.f32" --vocab "$V" \
      --label "chunk $chunk") && ok "logits with an image ($n tokens), chunk $chunk: $out" ||
      bad "logits with an image, chunk $chunk: $out"
  else
    bad "logits --image, chunk $chunk: $(cat "$work/err")"
  fi
done
# tensor parallel: two ranks in one process, and two processes (node 0 sends node 1 the image rows)
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if "$MIMO_BIN" logits --model "$M" --backend cpu --threads 2 --tensor-parallel-size 2 --tokens "$pre,$IMG,$post" \
  --image "$work/a.png" --chunk 5 --out "$work/tp2.f32" 2>"$work/err"; then
  out=$($PY "$MIMO_SRC/tests/model/compare_logits.py" "$work/tp2.f32" "$work/ref.f32" --vocab "$V" --label "TP-2") &&
    ok "logits with an image at TP-2: $out" || bad "logits with an image at TP-2: $out"
else
  bad "logits --image at TP-2: $(cat "$work/err")"
fi
port=$(free_port)
L=("$MIMO_BIN" logits --model "$M" --backend cpu --threads 1 --tensor-parallel-size 2 --nnodes 2 --master-port "$port"
  --tokens "$pre,$IMG,$post" --image "$work/a.png" --chunk 16)
"${L[@]}" --node-rank 1 --out "$work/unused" >"$work/node1.log" 2>&1 &
w=$!
"${L[@]}" --node-rank 0 --out "$work/2proc.f32" >"$work/node0.log" 2>&1; rc0=$?
wait $w; rc1=$?
if [ $rc0 = 0 ] && [ $rc1 = 0 ]; then
  out=$($PY "$MIMO_SRC/tests/model/compare_logits.py" "$work/2proc.f32" "$work/ref.f32" --vocab "$V" --label "2 nodes") &&
    ok "logits with an image over 2 nodes: $out" || bad "logits with an image over 2 nodes: $out"
else
  bad "logits --image over 2 nodes: node 0 rc=$rc0 node 1 rc=$rc1: $(tail -n 2 "$work/node0.log" "$work/node1.log")"
fi
"$MIMO_BIN" logits --model "$M" --backend cpu --tokens "$expanded" --out "$work/plain.f32" 2>/dev/null
same=$($PY -c "
import numpy as n; a=n.fromfile('$work/plain.f32','<f4').reshape(-1,$V); b=n.fromfile('$work/l0.f32','<f4').reshape(-1,$V)
m=abs(a).max(); print(int(abs(a[:3]-b[:3]).max()<=1e-5*m), int(abs(a[3:]-b[3:]).max()>1e-3*m))")
[ "$same" = "1 1" ] && ok "the rows change the image's positions and after, not before (rows batch with others: to 1e-5)" ||
  bad "image rows: before-equal/after-differ = $same"

# 5. refusals
refused "truncated image" "bad.png" "$MIMO_BIN" vision --model "$M" --image "$work/bad.png"
refused "two images, one placeholder" "2 images given but the prompt has 1 placeholder" \
  "$MIMO_BIN" logits --model "$M" --tokens "1,$IMG,2" --image "$work/a.png,$work/b.jpg" --out "$work/x.f32"
"$MIMO_BIN" synth --out "$work/t" --preset tiny --seed 3 --no-vision 2>/dev/null
refused "text-only model" "no vision tower" "$MIMO_BIN" vision --model "$work/t" --image "$work/a.png"
refused "text-only model (logits)" "no vision tower" \
  "$MIMO_BIN" logits --model "$work/t" --tokens "1,$IMG,2" --image "$work/a.png" --out "$work/x.f32"
finish vision
