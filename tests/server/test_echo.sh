#!/usr/bin/env bash
# Completions' `echo` (with and without logprobs) and vLLM's `prompt_logprobs` (completions and chat) through the
# official OpenAI client, the prompt fed in chunks of 16 with prefix caching on; the prompt logprobs and ranks
# against plain-Python log-softmax of `mimo logits` rows.
source "$(dirname "$0")/lib.sh"
V=$(grep -o '"vocab_size": *[0-9]*' "$MODEL/config.json" | grep -o '[0-9]*$')
IDS=$(awk -v V="$V" 'BEGIN{s=5; for(i=0;i<41;i++){s=(s*1103515245+12345)%2147483648; printf "%s%d", (i?",":""), s%V}}')
export IDS OUT="$WORK/echo.json"
"$MIMO_BIN" logits --model "$MODEL" --backend cpu --tokens "$IDS" --out "$WORK/ref.f32" 2>/dev/null || die "mimo logits"
start_server --max-num-batched-tokens 16
run_node "$HERE/echo.cjs"
stop_server
python3 "$HERE/echo_ref.py" "$V" "$IDS" "$WORK/ref.f32" "$OUT" || die "echoed logprobs differ from the reference"
echo "ok   echo and prompt_logprobs: prompt text, logprobs and ranks (chunked, cache on, n=2) = reference; streamed = whole; chat stream + prompt_logprobs refused"
