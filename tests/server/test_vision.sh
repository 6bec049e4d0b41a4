#!/usr/bin/env bash
# Images in chat requests on the tiny synthetic model with its vision tower (tests/server/vision.cjs drives the
# official clients). The server's first greedy token and its logprob must be what `mimo logits --image` gives for
# the same rendered prompt (the CLI path is checked against numpy references in tests/model/test_vision.sh); the
# prompt grows by the image's tokens; bad images and sources are 400s naming the part.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
$PY -c "
import numpy as n; from PIL import Image
Image.fromarray(n.random.default_rng(5).integers(0, 256, (30, 45, 3), dtype=n.uint8)).save('$WORK/img.png')
Image.fromarray(n.random.default_rng(6).integers(0, 256, (30, 45, 3), dtype=n.uint8)).save('$WORK/img2.png')" ||
  die "making the test image (python3-pil)"
start_server --allowed-local-media-path "$WORK"
out=$(IMG="$WORK/img.png" IMG2="$WORK/img2.png" timeout 300 node "$HERE/vision.cjs") || die "vision.cjs"
echo "$out"
get() { node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$out" "$1"; }
# the same image in five requests: the tower ran for it once (the encoder's cache, --mm-processor-cache-gb)
metrics=$(curl -sf "$BASE/metrics") || die "/metrics"
hits=$(sed -n 's/^mimo:vision_cache_hits_total{model_name="tiny"} \([0-9]*\)$/\1/p' <<<"$metrics")
queries=$(sed -n 's/^mimo:vision_cache_queries_total{model_name="tiny"} \([0-9]*\)$/\1/p' <<<"$metrics")
[ -n "$hits" ] && [ "$hits" -ge 4 ] && [ "$queries" -gt "$hits" ] || die "vision cache: $hits hits of $queries"
echo "ok   vision cache: $hits hits of $queries images"
# the same prompt through the CLI: render, tokenize, logits with the image
cat >"$WORK/msgs.json" <<'JSON'
[{"role": "user", "content": [{"type": "text", "text": "What is in "}, {"type": "image"}, {"type": "text", "text": " this picture?"}]}]
JSON
"$MIMO_BIN" render --model "$MODEL" --messages "$WORK/msgs.json" >"$WORK/prompt.txt" || die "render"
ids=$("$MIMO_BIN" tokenize --model "$MODEL" <"$WORK/prompt.txt" | tr -d ' \n') || die "tokenize"
"$MIMO_BIN" logits --model "$MODEL" --tokens "$ids" --image "$WORK/img.png" --out "$WORK/l.f32" 2>"$WORK/err" ||
  die "logits --image: $(cat "$WORK/err")"
V=$($PY -c "import json;print(json.load(open('$MODEL/config.json'))['vocab_size'])")
# the server samples among the tokenizer's ids only (the embedding table has padding rows past them)
K=$($PY -c "
import json; t=json.load(open('$MODEL/tokenizer.json'))
print(max(list(t['model']['vocab'].values()) + [a['id'] for a in t['added_tokens']]) + 1)")
read -r T tok lp <<<"$($PY -c "
import numpy as n; l=n.fromfile('$WORK/l.f32','<f4').astype(n.float64).reshape(-1,$V)[-1][:$K]
z=l-l.max(); p=z-n.log(n.exp(z).sum()); print(n.fromfile('$WORK/l.f32','<f4').size//$V, int(l.argmax()), p.max())")"
[ "$(get prompt_tokens)" = "$T" ] || die "prompt_tokens $(get prompt_tokens), the CLI's expanded prompt has $T"
want=$(curl -sf "$BASE/detokenize" -d "{\"tokens\":[$tok]}" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).prompt))')
[ "$(get first_token)" = "$want" ] || die "first token '$(get first_token)', the CLI's argmax is '$want' ($tok)"
$PY -c "import sys;sys.exit(0 if abs(float(sys.argv[1])-float(sys.argv[2]))<1e-4 else 1)" "$(get first_logprob)" "$lp" ||
  die "first token logprob $(get first_logprob), the CLI's $lp"
echo "ok   server = CLI: $T prompt tokens, first token '$want' logprob $lp"
# /tokenize counts the image's tokens from its size (the tower does not run: the cache sees no query)
q0=$(curl -sf "$BASE/metrics" | sed -n 's/^mimo:vision_cache_queries_total{model_name="tiny"} //p')
count=$(node -e 'const u="data:image/png;base64,"+require("fs").readFileSync(process.argv[1]).toString("base64");
console.log(JSON.stringify({model:"tiny",messages:[{role:"user",content:[{type:"text",text:"What is in "},
{type:"image_url",image_url:{url:u}},{type:"text",text:" this picture?"}]}]}))' "$WORK/img.png" |
  curl -sf "$BASE/tokenize" --data-binary @- | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).count))')
q1=$(curl -sf "$BASE/metrics" | sed -n 's/^mimo:vision_cache_queries_total{model_name="tiny"} //p')
[ "$count" = "$T" ] && [ "$q0" = "$q1" ] || die "/tokenize with the image: $count tokens (want $T), cache queries $q0 -> $q1"
echo "ok   /tokenize: $count tokens with the image, the tower not run"
n_img=$((T - $(tr ',' '\n' <<<"$ids" | wc -l) + 1))
# Anthropic's count_tokens: the image's tokens and its vision_start/vision_end
[ "$(get anthropic_image_delta)" = $((n_img + 2)) ] ||
  die "count_tokens: the image added $(get anthropic_image_delta) tokens, want $n_img + 2"
echo "ok   count_tokens: the image adds $n_img + 2 tokens"
# errors: each a 400 naming the part
msg() { echo '{"model":"tiny","max_tokens":2,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"'"$1"'"}}]}]}'; }
expect_400 "$(msg 'ftp://example.com/cat.png')" "an image URL must be http(s)://"
expect_400 "$(msg 'data:image/png;base64,iVBO!!')" "messages[0].content[0].image_url"
expect_400 "$(msg 'data:text/plain;base64,aGVsbG8=')" "is not an image"
expect_400 "$(msg 'data:image/png;base64,aGVsbG8=')" "image: unknown format"
expect_400 "$(msg 'file:///etc/passwd')" "outside --allowed-local-media-path"
expect_400 '{"model":"tiny","max_tokens":2,"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}' "not supported"
stop_server
start_server --limit-mm-per-prompt '{"image": 1}'
two="$(node -e 'const u="data:image/png;base64,"+require("fs").readFileSync(process.argv[1]).toString("base64");
console.log(JSON.stringify({model:"tiny",max_tokens:2,messages:[{role:"user",content:[{type:"image_url",image_url:{url:u}},
{type:"image_url",image_url:{url:u}}]}]}))' "$WORK/img.png")"
expect_400 "$two" "at most 1 image per request (--limit-mm-per-prompt)"
stop_server
# a text-only model refuses images
"$MIMO_BIN" synth --out "$MODEL" --preset tiny --seed 1 --no-vision >/dev/null 2>&1 || die "synth --no-vision"
start_server
expect_400 "$(msg "data:image/png;base64,$(base64 -w0 "$WORK/img.png")")" "this model takes text only"
stop_server
echo "ok"
