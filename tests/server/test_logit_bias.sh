#!/usr/bin/env bash
# OpenAI logit_bias and vLLM's min_tokens on the tiny model, against what they promise:
#   - +100 on a token makes greedy decoding output only it (raw logprobs, before the bias, are the unit test's);
#   - -100 on greedy's first token makes the first token another;
#   - min_tokens keeps a stop token id, and a stop string, from ending the output before that many tokens;
#   - bad values are 400s naming the field.
source "$(dirname "$0")/lib.sh"
start_server --backend cpu --threads 2
post() { curl -sS -m 60 "$BASE/v1/completions" -H 'content-type: application/json' -d "$1"; }
field() { node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8")); if(!r.choices){console.log("ERROR "+JSON.stringify(r));process.exit(0)}
  const c=r.choices[0]; const f={text:c.text, finish:c.finish_reason, ntok:r.usage.completion_tokens,
  toks:c.logprobs?c.logprobs.tokens:null, lps:c.logprobs?c.logprobs.token_logprobs:null, top:c.logprobs?c.logprobs.top_logprobs:null};
  console.log(typeof f[process.argv[1]]==="string"?f[process.argv[1]]:JSON.stringify(f[process.argv[1]]))' "$1"; }
base='"model":"tiny","prompt":"the quick brown fox","temperature":0,"ignore_eos":true'
plain=$(post "{$base,\"max_tokens\":6,\"logprobs\":5}")
grep -q ERROR <<<"$(field text <<<"$plain")" && die "plain: $plain"
# the id of greedy's first token, and of another token from its top list
ids=$(curl -sf "$BASE/tokenize" -d "{\"model\":\"tiny\",\"prompt\":$(field toks <<<"$plain" | node -e 'const t=JSON.parse(require("fs").readFileSync(0,"utf8")); console.log(JSON.stringify(t[0]))')}" |
  node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).tokens.join(","))')
first=${ids%%,*}
[ -n "$first" ] || die "tokenize the first token"
# +100 on token 42: every output token is 42
forced=$(post "{$base,\"max_tokens\":5,\"logprobs\":1,\"logit_bias\":{\"42\":100}}")
want=$(curl -sf "$BASE/detokenize" -d '{"model":"tiny","tokens":[42,42,42,42,42]}' | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).prompt)')
[ "$(field text <<<"$forced")" = "$want" ] || die "logit_bias +100 on 42: '$(field text <<<"$forced")', want '$want'"
# -100 on the first greedy token: another first token
banned=$(post "{$base,\"max_tokens\":1,\"logit_bias\":{\"$first\":-100}}")
[ "$(field text <<<"$banned")" != "$(node -e 'console.log(JSON.parse(process.argv[1])[0])' "$(field toks <<<"$plain")")" ] ||
  die "logit_bias -100 on greedy's first token $first did not change it"
echo "ok   logit_bias: +100 forces the token, -100 removes greedy's first"
# min_tokens: greedy's first token as a stop id ends the output at once, unless min_tokens
stopped=$(post "{$base,\"max_tokens\":8,\"stop_token_ids\":[$first]}")
[ "$(field ntok <<<"$stopped")" = 0 ] || die "stop_token_ids [$first]: $(field ntok <<<"$stopped") tokens"
held=$(post "{$base,\"max_tokens\":8,\"stop_token_ids\":[$first],\"min_tokens\":5}")
n=$(field ntok <<<"$held")
[ "$n" -ge 5 ] || die "min_tokens 5 with stop id $first: $n tokens"
# a stop string in greedy's text is ignored before min_tokens
txt=$(field text <<<"$plain")
stop_str=${txt:0:2}
s1=$(post "{$base,\"max_tokens\":6,\"stop\":[$(node -e 'console.log(JSON.stringify(process.argv[1]))' "$stop_str")]}")
s2=$(post "{$base,\"max_tokens\":6,\"min_tokens\":6,\"stop\":[$(node -e 'console.log(JSON.stringify(process.argv[1]))' "$stop_str")]}")
[ "$(field finish <<<"$s1")" = stop ] && [ "$(field finish <<<"$s2")" = length ] ||
  die "stop string '$stop_str': finish $(field finish <<<"$s1") without min_tokens, $(field finish <<<"$s2") with min_tokens 6"
echo "ok   min_tokens: a stop id ($n tokens instead of 0) and a stop string wait for it"
expect_c400() { # BODY SUBSTRING
  local code
  code=$(curl -s -m 30 -o "$WORK/resp" -w '%{http_code}' -H 'Content-Type: application/json' "$BASE/v1/completions" -d "$1")
  [ "$code" = 400 ] && grep -qF -- "$2" "$WORK/resp" || die "status $code for $1: $(cat "$WORK/resp"), wanted '$2'"
}
expect_c400 "{$base,\"max_tokens\":2,\"logit_bias\":{\"abc\":1}}" "'abc' is not a token id"
expect_c400 "{$base,\"max_tokens\":2,\"logit_bias\":{\"99999999\":1}}" "is not a token id"
expect_c400 "{$base,\"max_tokens\":2,\"logit_bias\":{\"5\":\"x\"}}" "a bias must be a number"
expect_c400 "{$base,\"max_tokens\":2,\"logit_bias\":[1]}" "'logit_bias' must be an object"
expect_c400 "{$base,\"max_tokens\":2,\"min_tokens\":3}" "min_tokens (3) must be at most max_tokens (2)"
stop_server
echo "ok   bad logit_bias / min_tokens: 400s naming them"
