#!/usr/bin/env bash
# X-Request-Id, as vLLM takes it: a client's id names the completion ("chatcmpl-<id>", "cmpl-<id>", the chunks of a
# stream too); with --enable-request-id-headers every reply carries X-Request-Id, the client's or a new one. An id
# that could not stand in a JSON string or a header as it is (a space, a quote, over 64 bytes) is not taken.
source "$(dirname "$0")/lib.sh"
chat='{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
idof() { node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).id)'; }
hdr() { sed -n 's/^[Xx]-[Rr]equest-[Ii]d: *\([^\r]*\).*/\1/p' "$1"; }
start_server --backend cpu --threads 2
id=$(curl -sf "$BASE/v1/chat/completions" -H 'content-type: application/json' -H 'X-Request-Id: job-7.a:b_c' -d "$chat" | idof)
[ "$id" = "chatcmpl-job-7.a:b_c" ] || die "chat id with X-Request-Id: $id"
id=$(curl -sf "$BASE/v1/completions" -H 'content-type: application/json' -H 'X-Request-Id: r1' \
  -d '{"model":"tiny","prompt":"hi","max_tokens":2}' | idof)
[ "$id" = "cmpl-r1" ] || die "completion id with X-Request-Id: $id"
ids=$(curl -sfN "$BASE/v1/chat/completions" -H 'content-type: application/json' -H 'X-Request-Id: s9' \
  -d "${chat%\}},\"stream\":true}" | sed -n 's/^data: \({.*\)/\1/p' | node -e '
    const ids = new Set(require("fs").readFileSync(0, "utf8").trim().split("\n").map((l) => JSON.parse(l).id));
    console.log([...ids].join(","))')
[ "$ids" = "chatcmpl-s9" ] || die "stream chunk ids with X-Request-Id: $ids"
id=$(curl -sf "$BASE/v1/chat/completions" -H 'content-type: application/json' -H 'X-Request-Id: a"b' -d "$chat" | idof)
[[ "$id" =~ ^chatcmpl-[0-9a-f]{32}$ ]] || die "an id with a quote was taken: $id"
curl -sf -D "$WORK/h0" -o /dev/null "$BASE/v1/models" -H 'X-Request-Id: q1' || die "/v1/models"
[ -z "$(hdr "$WORK/h0")" ] || die "X-Request-Id sent back without --enable-request-id-headers"
stop_server
start_server --backend cpu --threads 2 --enable-request-id-headers
curl -sf -D "$WORK/h1" -o /dev/null "$BASE/v1/chat/completions" -H 'content-type: application/json' \
  -H 'X-Request-Id: q2' -d "$chat" || die "chat"
[ "$(hdr "$WORK/h1")" = q2 ] || die "X-Request-Id not echoed: '$(hdr "$WORK/h1")'"
curl -sf -D "$WORK/h2" -o /dev/null "$BASE/v1/models" || die "/v1/models"
[[ "$(hdr "$WORK/h2")" =~ ^[0-9a-f]{32}$ ]] || die "no new X-Request-Id: '$(hdr "$WORK/h2")'"
curl -s -D "$WORK/h3" -o /dev/null "$BASE/v1/nope" -H "X-Request-Id: $(printf 'x%.0s' $(seq 65))"
h=$(hdr "$WORK/h3")
[[ "$h" =~ ^[0-9a-f]{32}$ ]] || die "a 404 with a 65-byte id: '$h'"
stop_server
echo "ok   X-Request-Id names the completion (chat, completions, stream chunks); --enable-request-id-headers echoes it or makes one; unsafe ids not taken"
