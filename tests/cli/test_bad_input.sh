#!/usr/bin/env bash
# Broken checkpoints: each must give one clear line naming what is wrong
# (file, tensor or field) and exit status 1 from `inspect` and `logits` — never
# a crash, never a silent success.
set -u
PY=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$MIMO_BIN" synth --out "$work/good" --preset tiny --seed 7 2>/dev/null || { echo "synth failed"; exit 1; }
"$MIMO_BIN" inspect --model "$work/good" >/dev/null || { echo "good checkpoint rejected"; exit 1; }
fails=0
check() { # case expected-substring
  local c=$1 want=$2
  $PY "$MIMO_SRC/tests/cli/corrupt.py" "$work/good" "$work/$c" "$c" || { echo "FAIL $c: corrupt.py"; fails=$((fails+1)); return; }
  for cmd in inspect logits; do
    local extra=""; [ $cmd = logits ] && extra="--tokens 1,2,3 --out $work/out.f32"
    "$MIMO_BIN" $cmd --model "$work/$c" $extra >"$work/stdout" 2>"$work/stderr"
    local rc=$? lines
    lines=$(wc -l <"$work/stderr")
    if [ $rc -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$want" "$work/stderr"; then
      echo "FAIL $c ($cmd): rc=$rc, $lines stderr lines, wanted '$want':"; cat "$work/stderr"; fails=$((fails+1))
    else
      echo "ok   $c ($cmd): $(cat "$work/stderr")"
    fi
  done
}
check truncated "file truncated"
check header_past_end "header length"
check unknown_dtype "unknown dtype 'BF17'"
check overlap "overlaps"
check missing_tensor "missing tensor 'model.layers.2.post_attention_layernorm.weight'"
check wrong_shape "'model.layers.1.self_attn.qkv_proj.weight' has shape"
check qkv_not_divisible "not divisible by the chunk count"
check missing_config_field "missing required field 'hidden_size'"
check not_mimo "not a MiMo-V2 model"
check bad_index "not a plain shard file name"
check int4_bits8 "num_bits must be 4"
check missing_vision_sink "missing tensor 'visual.blocks.1.attn.sinks'"
check vision_depth_more "missing tensor 'visual.blocks.4.norm1.weight'"
check vision_depth_less "unexpected tensor 'visual.blocks.3.norm1.weight': vision_config.depth is 3"
check vision_bad_type "vision_config.vit_window_attn_types[1] must be -1 (full), 0 (row window) or 1 (column window)"
# A trace the command cannot honour is refused, not silently left empty.
"$MIMO_BIN" logits --model "$work/good" --tokens 1,2,3 --out "$work/out.f32" --tensor-parallel-size 2 \
  --route-margin "$work/m.f32" >"$work/stdout" 2>"$work/stderr"
rc=$?
if [ $rc -eq 1 ] && grep -qF -- "--route-margin needs --backend cpu on one rank" "$work/stderr" && [ ! -e "$work/m.f32" ]; then
  echo "ok   route-margin at TP-2: $(cat "$work/stderr")"
else
  echo "FAIL route-margin at TP-2: rc=$rc:"; cat "$work/stderr"; fails=$((fails+1))
fi
# A KV cache type the build does not have is named, before any model work.
"$MIMO_BIN" logits --model "$work/good" --tokens 1,2,3 --out "$work/out.f32" --kv-cache-dtype fp8 >"$work/stdout" 2>"$work/stderr"
rc=$?
if [ $rc -ne 0 ] && grep -qF -- "--kv-cache-dtype 'fp8': need float32 or bfloat16" "$work/stderr"; then
  echo "ok   kv-cache-dtype fp8: $(head -1 "$work/stderr")"
else
  echo "FAIL kv-cache-dtype fp8: rc=$rc:"; cat "$work/stderr"; fails=$((fails+1))
fi
[ $fails -eq 0 ] && echo "bad-input: all cases rejected correctly" || { echo "bad-input: $fails failures"; exit 1; }
