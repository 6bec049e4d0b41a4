#!/usr/bin/env bash
# `mimo serve --num-speculative-tokens K` (MTP drafts, engine_spec.c) answers what the server without drafts answers:
# greedy and seeded sampled completions with penalties and logprobs, a streamed chat, a stop string, structured
# outputs, an image, concurrent requests; in one process, through vLLM's --speculative-config, and over two processes (node 0 steps the caches
# back on node 1 too). /metrics counts the drafts. Bad configurations are refused at start with the reason.
source "$(dirname "$0")/lib.sh"
MTP="$WORK/mtp"
"$MIMO_BIN" synth --out "$MTP" --preset tiny --seed 3 --mtp-layers 1 >/dev/null 2>&1 || die "synth --mtp-layers"
MODEL_SAVED="$MODEL"
MODEL="$MTP"

# post PATH BODY OUT
post() { curl -sS --max-time 60 "$BASE$1" -H 'content-type: application/json' -d "$2" >"$3"; }
# The answers of one server: texts, token logprobs (rounded), finish reasons, a streamed chat's text.
answers() { # OUT
  local out=$1
  : >"$out"
  local bodies=(
    '{"model":"tiny","prompt":"one two three four","max_tokens":24,"temperature":0}'
    '{"model":"tiny","prompt":"the quick brown fox","max_tokens":27,"temperature":0.8,"top_p":0.9,"top_k":40,"seed":11,"presence_penalty":0.4,"frequency_penalty":0.2,"repetition_penalty":1.1,"logprobs":2}'
    '{"model":"tiny","prompt":"alpha beta gamma","max_tokens":30,"temperature":1.0,"min_p":0.05,"seed":5,"n":2}'
    '{"model":"tiny","prompt":"one two three four","max_tokens":24,"temperature":0,"stop":["'"$STOP"'"]}'
    '{"model":"tiny","prompt":"JSON:","max_tokens":60,"temperature":0.8,"seed":9,"response_format":{"type":"json_object"}}'
    '{"model":"tiny","prompt":"pick:","max_tokens":20,"temperature":0.8,"seed":2,"guided_choice":["yes","no","maybe"]}'
  )
  local i=0
  for b in "${bodies[@]}"; do
    post /v1/completions "$b" "$WORK/a$i.json"
    node -e 'const r=require(process.argv[1]); if(!r.choices) {console.log("ERROR "+JSON.stringify(r)); process.exit(0)}
      for (const c of r.choices) console.log(JSON.stringify([c.text, c.finish_reason,
        c.logprobs ? c.logprobs.token_logprobs.map(x => x.toFixed(4)) : null]))' "$WORK/a$i.json" >>"$out"
    i=$((i + 1))
  done
  # streamed chat
  curl -sS -N --max-time 60 "$BASE/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hi there"}],"max_tokens":20,"temperature":0.7,"seed":3,"stream":true}' |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let t="";for(const l of s.split("\n")){
      if(!l.startsWith("data: {"))continue;const j=JSON.parse(l.slice(6));const d=j.choices[0]&&j.choices[0].delta||{};
      t+=(d.content||"")+(d.reasoning_content||"")} console.log(JSON.stringify(t))})' >>"$out"
  # an image (its positions feed the MTP the tower's rows)
  curl -sS --max-time 60 "$BASE/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"see "},{"type":"image_url","image_url":{"url":"'"$IMG"'"}}]}],"max_tokens":20,"temperature":0.6,"seed":4}' |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s); if(!r.choices){console.log("ERROR "+s);return}
      const m=r.choices[0].message; console.log(JSON.stringify([m.reasoning_content, m.content, r.usage]))})' >>"$out"
  # concurrent greedy requests
  local pids=()
  for i in 1 2 3; do
    ( post /v1/completions '{"model":"tiny","prompt":"count '"$i"' and on","max_tokens":20,"temperature":0,"ignore_eos":true}' "$WORK/c$i.json" ) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  for i in 1 2 3; do node -e 'console.log(JSON.stringify(require(process.argv[1]).choices[0].text))' "$WORK/c$i.json" >>"$out"; done
}

IMG="data:image/png;base64,$(/usr/bin/python3 -c "
import base64, io, numpy as n; from PIL import Image
b = io.BytesIO(); Image.fromarray(n.random.default_rng(9).integers(0, 256, (28, 40, 3), dtype=n.uint8)).save(b, 'PNG')
print(base64.b64encode(b.getvalue()).decode())")"
# A stop string from the greedy answer's middle (found without drafts).
STOP=zzzz
start_server --backend cpu --threads 2
post /v1/completions '{"model":"tiny","prompt":"one two three four","max_tokens":24,"temperature":0}' "$WORK/g.json"
STOP=$(node -e 'const t=require(process.argv[1]).choices[0].text; process.stdout.write(t.slice(Math.floor(t.length/2), Math.floor(t.length/2)+2).replace(/["\\]/g,""))' "$WORK/g.json")
answers "$WORK/plain.txt"
stop_server
grep -q ERROR "$WORK/plain.txt" && die "plain server: $(grep ERROR "$WORK/plain.txt")"

start_server --backend cpu --threads 2 --num-speculative-tokens 3
answers "$WORK/spec3.txt"
m=$(curl -sf "$BASE/metrics") || die "/metrics"
stop_server
diff "$WORK/plain.txt" "$WORK/spec3.txt" >&2 || die "--num-speculative-tokens 3 answers differ"
drafts=$(sed -n 's/^vllm:spec_decode_num_draft_tokens_total{model_name="tiny"} \([0-9]*\)$/\1/p' <<<"$m")
[ -n "$drafts" ] && [ "$drafts" -gt 0 ] || die "/metrics: no draft tokens counted"
grep -q '^vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="tiny",position="2"} ' <<<"$m" ||
  die "/metrics: no per-position counter for position 2"

start_server --backend cpu --threads 2 --speculative-config '{"method": "mtp", "num_speculative_tokens": 1}'
answers "$WORK/spec1.txt"
stop_server
diff "$WORK/plain.txt" "$WORK/spec1.txt" >&2 || die "--speculative-config k=1 answers differ"
echo "ok   --num-speculative-tokens 3 and --speculative-config k=1 answer as without drafts ($drafts drafts verified)"

# Two processes: node 0 drafts and steps both nodes' caches back.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MIMO_BIN" serve "$MODEL" --backend cpu --threads 1 --tensor-parallel-size 2 --nnodes 2 --node-rank 1 \
  --master-port "$port" >"$WORK/node1.log" 2>&1 &
node1=$!
start_server --backend cpu --threads 1 --tensor-parallel-size 2 --nnodes 2 --node-rank 0 --master-port "$port" \
  --num-speculative-tokens 2
answers "$WORK/spec_2proc.txt"
stop_server
node1_rc=0
wait "$node1" || node1_rc=$?
[ "$node1_rc" = 0 ] || die "node 1 exited with $node1_rc: $(tail -3 "$WORK/node1.log")"
diff "$WORK/plain.txt" "$WORK/spec_2proc.txt" >&2 || die "2 processes with drafts: answers differ"
echo "ok   2 processes (TP-2 over nodes) with --num-speculative-tokens 2 answer as one without drafts"

# Refusals at start: exit status 2 for bad options, 1 (with the reason) for a checkpoint without MTP layers.
refuse() { # WANT_RC SUBSTRING ARGS...
  local want=$1 sub=$2 rc=0
  shift 2
  "$MIMO_BIN" serve "$@" --backend cpu --port 0 >"$WORK/refuse.log" 2>&1 || rc=$?
  [ "$rc" = "$want" ] && grep -qF -- "$sub" "$WORK/refuse.log" || die "serve $*: status $rc, wanted $want and '$sub': $(tail -2 "$WORK/refuse.log")"
}
refuse 2 "only \"mtp\"" "$MODEL" --speculative-config '{"method": "eagle", "num_speculative_tokens": 2}'
refuse 2 "num_speculative_tokens is missing" "$MODEL" --speculative-config '{"method": "mtp"}'
refuse 2 "unknown key" "$MODEL" --speculative-config '{"method": "mtp", "num_speculative_tokens": 2, "draft_tensor_parallel_size": 2}'
refuse 2 "not a JSON object" "$MODEL" --speculative-config 'mtp'
refuse 2 "0 to 16" "$MODEL" --num-speculative-tokens 17
refuse 1 "the checkpoint has no MTP layers" "$MODEL_SAVED" --num-speculative-tokens 2
echo "ok   bad speculative configurations refused at start"
