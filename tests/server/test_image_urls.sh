#!/usr/bin/env bash
# http(s) image URLs (server/media_fetch.c): an image fetched from a local HTTP server gives exactly the answer the
# same bytes give inline (OpenAI image_url and Anthropic {type: url}), redirects are followed; a 404, a slow host,
# a host outside --allowed-media-domains, a redirect under it, and --no-media-fetch are 400s that say why.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
$PY -c "
import numpy as n; from PIL import Image
Image.fromarray(n.random.default_rng(7).integers(0, 256, (40, 36, 3), dtype=n.uint8)).save('$WORK/img.png')" ||
  die "making the test image (python3-pil)"
# the image host: /img.png, /redir (302 to it), /slow.png (after 3 s), anything else 404
cat >"$WORK/host.py" <<'PYEOF'
import http.server, sys, time
img = open(sys.argv[1], 'rb').read()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == '/redir':
            self.send_response(302); self.send_header('Location', '/img.png'); self.end_headers(); return
        if self.path == '/slow.png':
            time.sleep(3)
        if self.path in ('/img.png', '/slow.png'):
            self.send_response(200); self.send_header('Content-Type', 'image/png')
            self.send_header('Content-Length', str(len(img))); self.end_headers(); self.wfile.write(img); return
        self.send_response(404); self.end_headers()
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PYEOF
$PY "$WORK/host.py" "$WORK/img.png" >"$WORK/host.port" 2>"$WORK/host.log" &
HOST_PID=$!
trap 'kill $HOST_PID 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 50); do [ -s "$WORK/host.port" ] && break; sleep 0.1; done
HP=$(cat "$WORK/host.port")
[ -n "$HP" ] || die "image host did not start"
IMG_URL="http://127.0.0.1:$HP/img.png"
DATA_URL="data:image/png;base64,$(base64 -w0 "$WORK/img.png")"

chat() { # URL -> the answer's text and logprobs, one JSON line
  curl -sS -m 60 "$BASE/v1/chat/completions" -H 'content-type: application/json' -d '{"model":"tiny","max_tokens":4,
    "temperature":0,"logprobs":true,"messages":[{"role":"user","content":[{"type":"text","text":"look: "},
    {"type":"image_url","image_url":{"url":"'"$1"'"}}]}]}' |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);
      if(!r.choices){console.log("ERROR "+s);return}
      const c=r.choices[0];console.log(JSON.stringify([c.message.content,c.logprobs.content.map(t=>t.logprob.toFixed(5)),r.usage.prompt_tokens]))})'
}
anthropic() { # SOURCE_JSON -> the answer's text
  curl -sS -m 60 "$BASE/v1/messages" -H 'content-type: application/json' -d '{"model":"tiny","max_tokens":4,
    "temperature":0,"messages":[{"role":"user","content":[{"type":"text","text":"look: "},
    {"type":"image","source":'"$1"'}]}]}' |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);
      console.log(r.content?JSON.stringify(r.content):"ERROR "+s)})'
}

start_server --media-fetch-timeout 1
inline=$(chat "$DATA_URL")
fetched=$(chat "$IMG_URL")
redirected=$(chat "http://127.0.0.1:$HP/redir")
grep -q ERROR <<<"$inline$fetched$redirected" && die "chat with images: $inline / $fetched / $redirected"
[ "$fetched" = "$inline" ] || die "fetched image answers $fetched, inline $inline"
[ "$redirected" = "$inline" ] || die "image behind a redirect answers $redirected, inline $inline"
a_inline=$(anthropic '{"type":"base64","media_type":"image/png","data":"'"$(base64 -w0 "$WORK/img.png")"'"}')
a_url=$(anthropic '{"type":"url","url":"'"$IMG_URL"'"}')
grep -q ERROR <<<"$a_inline$a_url" && die "anthropic with images: $a_inline / $a_url"
[ "$a_url" = "$a_inline" ] || die "anthropic url source answers $a_url, base64 $a_inline"
echo "ok   fetched image = inline image (OpenAI $fetched; Anthropic too; through a redirect too)"
msg() { echo '{"model":"tiny","max_tokens":2,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"'"$1"'"}}]}]}'; }
expect_400 "$(msg "http://127.0.0.1:$HP/missing.png")" "HTTP 404"
t0=$(date +%s.%N)
expect_400 "$(msg "http://127.0.0.1:$HP/slow.png")" "not fetched within 1.0 s"
$PY -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) < 2.5 else 1)" "$t0" "$(date +%s.%N)" ||
  die "the slow host held the request past the timeout"
expect_400 "$(msg "gopher://127.0.0.1:$HP/x")" "an image URL must be http(s)://"
stop_server

start_server --allowed-media-domains "example.org, localhost"
[ "$(chat "http://localhost:$HP/img.png")" = "$inline" ] || die "an allowed host's image"
expect_400 "$(msg "$IMG_URL")" "host 127.0.0.1 is not in --allowed-media-domains"
expect_400 "$(msg "http://localhost:$HP/redir")" "a redirect (not followed with --allowed-media-domains)"
stop_server
start_server --no-media-fetch
expect_400 "$(msg "$IMG_URL")" "does not fetch image URLs (--no-media-fetch)"
stop_server
echo "ok   404, timeout, scheme, --allowed-media-domains (host, redirect) and --no-media-fetch refused with 400"
