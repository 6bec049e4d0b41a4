#!/usr/bin/env bash
# Installs the Debian packages mimo builds and tests with. Idempotent: apt runs
# only when a package is missing, so a warm machine pays nothing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang libclang-rt-dev
      libjansson-dev libcmocka-dev libonig-dev libutf8proc-dev libmicrohttpd-dev
      python3-jinja2 python3-numpy python3-jsonschema curl libcurl4-openssl-dev libpng-dev libjpeg62-turbo-dev libwebp-dev python3-pil)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The image ships Node.js with npm; a bare Debian needs its own packages.
if ! command -v npm >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi
# npm reference tools (tokenizer/jinja/clients) live in tests/npm with a committed lockfile.
if [ -f tests/npm/package-lock.json ] && [ ! -d tests/npm/node_modules ]; then
  (cd tests/npm && npm ci --silent --no-audit --no-fund)
fi
