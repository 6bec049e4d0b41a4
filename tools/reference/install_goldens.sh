#!/usr/bin/env bash
# Copies golden.json + logits.f32 of each case from an extracted goldens.tar (make_goldens.sh)
# into tests/data/ref/<case>/.   usage: tools/reference/install_goldens.sh EXTRACTED_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$1
for g in "$src"/*/golden.json; do
  name=$(basename "$(dirname "$g")")
  [ -d tests/data/ref/$name ] || { echo "skip $name: no case dir"; continue; }
  cp "$g" "$src/$name/logits.f32" tests/data/ref/$name/
  echo "installed $name"
done
