#!/usr/bin/env bash
# Structured outputs on the tiny synthetic model (a random model: whatever it "wants" to say, the grammar decides
# what it may): every finished output of every schema is valid JSON that python3-jsonschema accepts (an independent
# validator), cut-off ones (finish "length") are not checked; guided choices are one of the choices; unsupported
# schemas and conflicting options are 400s naming the field.
source "$(dirname "$0")/lib.sh"
start_server
export SCHEMAS='[
 {"type":"object","properties":{"name":{"type":"string","maxLength":6},"age":{"type":"integer"},
  "ok":{"type":"boolean"},"tags":{"type":"array","items":{"enum":["a","b",3,null]},"maxItems":2}},
  "required":["name","age","ok"]},
 {"type":"array","items":{"type":["integer","null"]},"minItems":1,"maxItems":3},
 {"anyOf":[{"type":"object","properties":{"k":{"const":"v"}},"required":["k"]},{"type":"boolean"}]},
 null,
 {"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{2}-[0-9]{3}$"},"id":{"type":"string","format":"uuid"}},"required":["code","id"]},
 {"$defs":{"Cat":{"type":"object","properties":{"pet_type":{"const":"cat"},"lives":{"type":"integer","minimum":1,"maximum":9}},
  "required":["pet_type","lives"],"additionalProperties":false},"Dog":{"type":"object","properties":{"pet_type":{"const":"dog"},
  "name":{"type":"string","maxLength":5}},"required":["pet_type","name"],"additionalProperties":false}},
  "type":"object","properties":{"pets":{"type":"array","maxItems":2,"items":{"oneOf":[{"$ref":"#/$defs/Cat"},{"$ref":"#/$defs/Dog"}],
  "discriminator":{"propertyName":"pet_type","mapping":{"cat":"#/$defs/Cat","dog":"#/$defs/Dog"}}}}},"required":["pets"]},
 {"type":"array","maxItems":3,"items":{"anyOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
  {"type":"object","properties":{"a":{"type":"string","maxLength":3},"b":{"type":"boolean"}},"required":["a","b"]},
  {"type":["integer","number"],"maximum":5},{"type":"string","format":"date"},{"type":"string","maxLength":3}]}}]'
run_node "$HERE/structured.cjs" >"$WORK/outputs.jsonl"
/usr/bin/python3 - "$WORK/outputs.jsonl" <<'PY' || die "structured outputs: a finished output is not valid"
import json, os, sys
import jsonschema
schemas = json.loads(os.environ["SCHEMAS"])
done = cut = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    s = schemas[o["schema"]]
    if o["finish"] != "stop":
        cut += 1
        continue
    v = json.loads(o["text"])
    jsonschema.validate(v, s if s is not None else {"type": "object"}, format_checker=jsonschema.FormatChecker())
    done += 1
print(f"ok   {done} finished outputs valid under their schemas ({cut} cut off by max_tokens)")
if done < 18:
    sys.exit(f"only {done} outputs finished")
PY
M='"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":4'
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"integer\",\"multipleOf\":3}}}}" \
  "schema.multipleOf: this schema keyword is not supported"
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"string\",\"pattern\":\"(?=a)\"}}}}" \
  "schema.pattern: regex: lookaround"
expect_400 "{$M,\"response_format\":{\"type\":\"json_object\"},\"guided_choice\":[\"a\"]}" "guided_choice and response_format are both given"
expect_400 "{$M,\"response_format\":{\"type\":\"yaml\"}}" "response_format.type 'yaml'"
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}}}}" \
  "schema.oneOf: alternatives 0 and 1 might both match one value"
expect_400 "{$M,\"response_format\":{\"type\":\"json_schema\"}}" "json_schema.schema is required"
expect_400 "{$M,\"guided_json\":\"{not json\"}" "guided_json: not a JSON schema"
expect_400 "{$M,\"response_format\":{\"type\":\"json_object\"},\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],\"tool_choice\":\"required\"}" \
  "a forced tool call cannot be combined with a response format"
# gen FILE MAX_TOKENS SEEDS BODY...: sampled completions with each body's fields and seeds 1..SEEDS, a reply a line
gen() {
  local f=$1 mt=$2 n=$3 body seed
  shift 3
  for body in "$@"; do
    for seed in $(seq 1 "$n"); do
      curl -sS -m 60 "$BASE/v1/completions" -H 'content-type: application/json' \
        -d "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":$mt,\"temperature\":1,\"seed\":$seed,$body}" >>"$f"
      echo >>"$f"
    done
  done
}
# guided_regex / structured_outputs.regex: every finished output fullmatches the pattern (Python's re)
gen "$WORK/regex.jsonl" 40 6 '"guided_regex":"[a-z]{2,5}-\\d{2}( (yes|no))?"' '"structured_outputs":{"regex":"(\\w{1,4}, ){0,3}end\\."}'
/usr/bin/python3 - "$WORK/regex.jsonl" <<'PY' || die "guided_regex: an output does not match"
import json, re, sys
pats = [r"[a-z]{2,5}-\d{2}( (yes|no))?", r"(\w{1,4}, ){0,3}end\."]
done = 0
for i, line in enumerate(l for l in open(sys.argv[1]) if l.strip()):
    c = json.loads(line)["choices"][0]
    if c["finish_reason"] != "stop":
        continue
    if not re.fullmatch(pats[i // 6], c["text"], re.ASCII):
        sys.exit(f"{pats[i // 6]!r} does not match {c['text']!r}")
    done += 1
print(f"ok   {done} of 12 regex-constrained outputs finished, each matching its pattern")
if done < 8:
    sys.exit("too few finished")
PY
# guided_grammar / structured_outputs.grammar (GBNF; vLLM's documentation example): every finished output is a
# sentence of the grammar, checked with a Python regex written out by hand for that grammar
G='root ::= select_statement\nselect_statement ::= \"SELECT \" column \" from \" table \" where \" condition\ncolumn ::= \"col_1 \" | \"col_2 \"\ntable ::= \"table_1 \" | \"table_2 \"\ncondition ::= column \"= \" number\nnumber ::= \"1 \" | \"2 \"'
gen "$WORK/gbnf.jsonl" 60 3 "\"guided_grammar\":\"$G\"" "\"structured_outputs\":{\"grammar\":\"$G\"}"
/usr/bin/python3 - "$WORK/gbnf.jsonl" <<'PY' || die "guided_grammar: an output is not in the grammar"
import json, re, sys
pat = r"SELECT (col_1 |col_2 ) from (table_1 |table_2 ) where (col_1 |col_2 )= (1 |2 )"
done = 0
for line in (l for l in open(sys.argv[1]) if l.strip()):
    r = json.loads(line)
    if "choices" not in r:
        sys.exit(f"no choices: {r}")
    c = r["choices"][0]
    if c["finish_reason"] != "stop":
        continue
    if not re.fullmatch(pat, c["text"]):
        sys.exit(f"not in the grammar: {c['text']!r}")
    done += 1
print(f"ok   {done} of 6 grammar-constrained outputs finished, each a sentence of the grammar")
if done < 4:
    sys.exit("too few finished")
PY
expect_400 "{$M,\"guided_grammar\":\"root ::= \\\"(\\\" root \\\")\\\"\"}" "guided_grammar: regex: the pattern matches no string"
expect_400 "{$M,\"structured_outputs\":{\"grammar\":\"root ::= [abc\"}}" "structured_outputs.grammar: grammar line 1: a character class is not closed"
expect_400 "{$M,\"guided_regex\":\"(a)\\\\1\"}" "guided_regex: regex: backreferences are not supported"
expect_400 "{$M,\"guided_regex\":\"a\",\"guided_choice\":[\"a\"]}" "guided_regex and guided_choice are both given"
expect_400 "{$M,\"structured_outputs\":{\"json_object\":true,\"whitespace_pattern\":\" \"}}" "whitespace_pattern is not supported"
# vLLM's structured_outputs {json_object: true} and disable_any_whitespace: valid JSON with no whitespace outside
# strings (a scan that follows the strings' escapes)
for so in '{"json_object":true,"disable_any_whitespace":true}' \
  '{"json":{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"},"maxItems":3},"b":{"type":"string","maxLength":8}},"required":["a","b"]},"disable_any_whitespace":true}'; do
  for seed in 1 2 3; do
    curl -sS -m 60 "$BASE/v1/completions" -H 'content-type: application/json' \
      -d "{\"model\":\"tiny\",\"prompt\":\"JSON:\",\"max_tokens\":120,\"temperature\":1,\"seed\":$seed,\"structured_outputs\":$so}" |
      python3 -c '
import json, sys
c = json.load(sys.stdin)["choices"][0]
if c["finish_reason"] == "stop":
    t = c["text"]
    assert isinstance(json.loads(t), dict), t
    inside = esc = False
    for ch in t:
        if inside:
            esc, inside = (not esc and ch == "\\"), (inside if esc or ch != "\"" else False)
        elif ch == "\"":
            inside = True
        else:
            assert ch not in " \t\n\r", repr(t)
    print("finished")' >>"$WORK/compact" || die "structured_outputs $so (seed $seed)"
  done
done
n=$(grep -c finished "$WORK/compact" || true)
[ "$n" -ge 2 ] || die "only $n compact outputs finished"
echo "ok   structured_outputs json_object / disable_any_whitespace: $n of 6 finished, each a compact JSON object"
# structural tags (response_format type structural_tag; structured_outputs.structural_tag as JSON text): read back by
# an independent reader (str.find for the triggers, json.JSONDecoder.raw_decode, python3-jsonschema); a structure cut
# off by max_tokens may stand at the end of a "length" output only. The trigger is one byte so that a random model
# opens structures often.
export STAG='{"type":"structural_tag","structures":[{"begin":"<a>","schema":{"type":"object","properties":{"n":{"type":"integer","maximum":9}},"required":["n"]},"end":"</a>"},{"begin":"<b>","schema":{"enum":["x","y"]},"end":"</b>"}],"triggers":["<"]}'
STAG_TEXT=$(python3 -c 'import json, os; print(json.dumps(json.dumps(json.loads(os.environ["STAG"]))))')
gen "$WORK/stag.jsonl" 128 8 "\"response_format\":$STAG" "\"structured_outputs\":{\"structural_tag\":$STAG_TEXT}"
/usr/bin/python3 - "$WORK/stag.jsonl" <<'PY' || die "structural_tag: an output breaks the tag"
import json, os, sys
import jsonschema
spec = json.loads(os.environ["STAG"])
dec, ws = json.JSONDecoder(), " \t\n\r"
outputs = structures = 0
for line in (l for l in open(sys.argv[1]) if l.strip()):
    r = json.loads(line)
    if "choices" not in r:
        sys.exit(f"no choices: {r}")
    c = r["choices"][0]
    d, cut, i = c["text"], c["finish_reason"] == "length", 0
    outputs += 1
    while True:
        p = d.find("<", i)
        if p < 0:
            break
        try:
            s = next(s for s in spec["structures"] if d.startswith(s["begin"], p))
            j = p + len(s["begin"])
            while d[j] in ws:
                j += 1
            v, j = dec.raw_decode(d, j)
            jsonschema.validate(v, s["schema"])
            while not d.startswith(s["end"], j):
                assert d[j] in ws, (d, j)
                j += 1
        except (StopIteration, IndexError, AssertionError, json.JSONDecodeError):
            if cut and (len(d) - p) < 40:  # a structure still open when max_tokens came
                break
            sys.exit(f"structure at {p} broken in {d!r}")
        i = j + len(s["end"])
        structures += 1
print(f"ok   structural tags: {outputs} outputs, {structures} whole structures, each value valid under its schema")
if structures < 5:
    sys.exit("too few structures")
PY
expect_400 "{$M,\"response_format\":{\"type\":\"structural_tag\",\"structures\":[{\"begin\":\"[a]\",\"schema\":{},\"end\":\"\"}],\"triggers\":[\"<\"]}}" \
  "response_format.structures[0].begin does not start with any of the triggers"
expect_400 "{$M,\"structured_outputs\":{\"structural_tag\":\"{\\\"type\\\":\\\"structural_tag\\\",\\\"format\\\":{\\\"type\\\":\\\"or\\\"}}\"}}" \
  "structured_outputs.structural_tag.format.type 'or' is not supported"
# xgrammar's later form: triggered_tags with at_least_one and stop_after_first: exactly one structure, then the
# request stops by itself (finish "stop" before max_tokens)
FT='{"type":"structural_tag","format":{"type":"triggered_tags","triggers":["<t="],"tags":[{"begin":"<t=pick>","content":{"type":"json_schema","json_schema":{"enum":["x","y",7]}},"end":"</t>"}],"at_least_one":true,"stop_after_first":true}}'
for seed in 1 2 3; do
  curl -sS -m 60 "$BASE/v1/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"tiny\",\"prompt\":\"x\",\"max_tokens\":64,\"temperature\":1,\"seed\":$seed,\"response_format\":$FT}" |
    python3 -c '
import json, re, sys
c = json.load(sys.stdin)["choices"][0]
assert c["finish_reason"] == "stop", c
m = re.fullmatch(r"<t=pick>\s*(.*?)\s*</t>", c["text"], re.S)
assert m and json.loads(m.group(1)) in ("x", "y", 7), c["text"]' || die "structural tag format form (seed $seed)"
done
echo "ok   structural tag, format form (at_least_one, stop_after_first): 3 of 3 outputs one structure, then stop"
stop_server
echo "ok"
