#!/usr/bin/env bash
# `mimo quantize` on a tiny synthetic checkpoint with bf16 experts: round to nearest, symmetric and asymmetric,
# bit-exact against plain Python written from the spec (quantize_ref.py), and the result loads; AWQ's scales folded
# without quantising (--smooth-only, float32) compute the same function (KL ~ 0 against the source) while the norms
# did change; AWQ and RTN checkpoints' KL from the source (reported, and both well below a random model's); with
# outlier channels in the MoE inputs AWQ's KL below RTN's; refusals that name what is wrong, and none of them leaves a
# checkpoint behind.
source "$(dirname "$0")/lib.sh"
S="$work/src"
"$MIMO_BIN" synth --out "$S" --preset tiny --quant bf16 --seed 5 2>/dev/null || { echo "synth failed"; exit 1; }
V=$(grep -o '"vocab_size": *[0-9]*' "$S/config.json" | grep -o '[0-9]*$')
calib=$(awk -v V="$V" 'BEGIN{s=17; for(i=0;i<256;i++){s=(s*1103515245+12345)%2147483648; printf "%s%d", (i?",":""), s%V}}')
ev=$(awk -v V="$V" 'BEGIN{s=29; for(i=0;i<384;i++){s=(s*1103515245+12345)%2147483648; printf "%s%d", (i?",":""), s%V}}')

for sch in sym asym; do
  scheme=w4a16; [ $sch = asym ] && scheme=w4a16-asym
  if "$MIMO_BIN" quantize --model "$S" --out "$work/rtn_$sch" --method rtn --scheme $scheme --group-size 32 \
    --ignore-layers 2 2>"$work/err"; then
    line=$(python3 "$(dirname "$0")/quantize_ref.py" "$S" "$work/rtn_$sch" 32 $sch 2) && ok "rtn $sch: $line" ||
      bad "rtn $sch against the reference: $line"
    "$MIMO_BIN" inspect --model "$work/rtn_$sch" >"$work/inspect" 2>&1 && grep -q "1 .*MoE experts int4 $sch group 32" "$work/inspect" &&
      grep -q "2 .*MoE experts BF16" "$work/inspect" && ok "rtn $sch: inspect accepts it (layer 2's experts left bf16)" ||
      bad "rtn $sch: inspect: $(tail -3 "$work/inspect")"
  else
    bad "rtn $sch: $(cat "$work/err")"
  fi
done

P=(perplexity --tokens "$ev" --ctx 128 --backend cpu)
"$MIMO_BIN" "${P[@]}" --model "$S" --kl-base-out "$work/base" >/dev/null 2>&1 || bad "perplexity of the source"
kl() { "$MIMO_BIN" "${P[@]}" --model "$1" --kl-base "$work/base" 2>/dev/null | sed -n 's/^Mean KLD *: \([^ ]*\).*/\1/p'; }

"$MIMO_BIN" quantize --model "$S" --out "$work/smooth" --method awq --smooth-only --group-size 32 --calib-tokens "$calib" \
  --calib-ctx 128 2>"$work/err" || bad "awq --smooth-only: $(cat "$work/err")"
k=$(kl "$work/smooth")
changed=$(python3 - "$S" "$work/smooth" <<'PY'
import json, os, struct, sys
def norm(d, name):
    for f in os.listdir(d):
        if f.endswith(".safetensors"):
            b = open(os.path.join(d, f), "rb").read(); n = struct.unpack_from("<Q", b)[0]; h = json.loads(b[8:8 + n])
            if name in h:
                s, e = h[name]["data_offsets"]; raw = b[8 + n + s:8 + n + e]
                if h[name]["dtype"] == "F32":
                    return struct.unpack("<%df" % (len(raw) // 4), raw)
                return [struct.unpack("<f", struct.pack("<I", x << 16))[0] for x in struct.unpack("<%dH" % (len(raw) // 2), raw)]
a = norm(sys.argv[1], "model.layers.1.post_attention_layernorm.weight"); b = norm(sys.argv[2], "model.layers.1.post_attention_layernorm.weight")
print(max(abs(x / y - 1) for x, y in zip(a, b)))
PY
)
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 1e-9 and float(sys.argv[2]) > 1e-3 else 1)" "${k:-1}" "${changed:-0}" &&
  ok "awq --smooth-only: KL from the source $k (the same function), layer 1's norm weights moved by up to $changed" ||
  bad "awq --smooth-only: KL $k, norm change $changed"

"$MIMO_BIN" quantize --model "$S" --out "$work/awq" --method awq --group-size 32 --calib-tokens "$calib" --calib-ctx 128 \
  2>"$work/err" || bad "awq: $(cat "$work/err")"
"$MIMO_BIN" quantize --model "$S" --out "$work/rtn" --method rtn --group-size 32 2>"$work/err" || bad "rtn: $(cat "$work/err")"
ka=$(kl "$work/awq") kr=$(kl "$work/rtn")
python3 -c "import sys; a, r = map(float, sys.argv[1:]); sys.exit(0 if 0 < a < 0.2 and 0 < r < 0.2 else 1)" "${ka:-1}" "${kr:-1}" &&
  ok "int4 group 32 KL from the bf16 source: awq $ka, rtn $kr" || bad "KL awq $ka, rtn $kr"

# with outlier channels in the MoE inputs (every 7th channel of the post-attention norms x20, as trained models
# have them), what AWQ is for: its KL from the source must come out below round to nearest's
O="$work/outliers"
cp -r "$S" "$O" && python3 "$(dirname "$0")/outliers.py" "$O" 20 >/dev/null || bad "outliers.py"
"$MIMO_BIN" "${P[@]}" --model "$O" --kl-base-out "$work/obase" >/dev/null 2>&1 || bad "perplexity of the outlier source"
"$MIMO_BIN" quantize --model "$O" --out "$work/oawq" --method awq --group-size 32 --calib-tokens "$calib" \
  --calib-ctx 128 2>/dev/null || bad "awq on outliers"
"$MIMO_BIN" quantize --model "$O" --out "$work/ortn" --method rtn --group-size 32 2>/dev/null || bad "rtn on outliers"
okl() { "$MIMO_BIN" "${P[@]}" --model "$1" --kl-base "$work/obase" 2>/dev/null | sed -n 's/^Mean KLD *: \([^ ]*\).*/\1/p'; }
ka=$(okl "$work/oawq") kr=$(okl "$work/ortn")
python3 -c "import sys; a, r = map(float, sys.argv[1:]); sys.exit(0 if 0 < a < r else 1)" "${ka:-1}" "${kr:-0}" &&
  ok "outlier channels: awq KL $ka below rtn's $kr" || bad "outlier channels: awq KL $ka, rtn $kr"

refuse() { # name, expected message part, args...
  local name=$1 want=$2; shift 2
  rm -rf "$work/no"
  if "$MIMO_BIN" quantize "$@" 2>"$work/err"; then bad "$name: accepted"
  elif ! grep -q -- "$want" "$work/err"; then bad "$name: $(cat "$work/err")"
  elif [ -e "$work/no/config.json" ]; then bad "$name: left a checkpoint behind"
  else ok "refused: $name ($(head -c 150 "$work/err"))"; fi
}
refuse "an int4 source" "already int4" --model "$work/rtn" --out "$work/no" --method rtn --group-size 32
refuse "a non-empty --out" "not empty" --model "$S" --out "$work/rtn" --method rtn --group-size 32
refuse "--out = --model" "source directory" --model "$S" --out "$S" --method rtn --group-size 32
refuse "a group that does not divide" "group-size 48" --model "$S" --out "$work/no" --method rtn --group-size 48
refuse "awq without calibration" "calib" --model "$S" --out "$work/no" --method awq --group-size 32
refuse "a calibration token past the vocabulary" "outside the vocabulary" --model "$S" --out "$work/no" --method awq \
  --group-size 32 --calib-tokens "1,2,$V"
refuse "an unknown scheme" "scheme" --model "$S" --out "$work/no" --method rtn --scheme w8a8
# a write that fails midway (a file size limit: the shard write gets EFBIG) names the file and leaves nothing behind
rm -rf "$work/no"
if (trap '' XFSZ; ulimit -f 100; "$MIMO_BIN" quantize --model "$S" --out "$work/no" --method rtn --group-size 32) \
  2>"$work/err"; then bad "a failed write: accepted"
elif ! grep -q "write failed" "$work/err" || [ -e "$work/no" ]; then bad "a failed write: $(tail -1 "$work/err"); left: $(ls "$work/no" 2>&1)"
else ok "a failed write removes what it wrote ($(tail -1 "$work/err"))"; fi
finish quantize
