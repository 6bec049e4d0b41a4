#!/usr/bin/env bash
# Packs CUDA builds made here into .cudabuild/ (bin/ + the shared libraries the
# device machine may lack), for tools/gpu-check to run there via `carry`.
# usage: tools/cuda_bundle.sh BUILD_SM90_DIR BUILD_PTX80_DIR [BUNDLE_NAME (default .cudabuild)]
# (BUILD_PTX80_DIR may equal BUILD_SM90_DIR when that build embeds compute_80 PTX:
# run with CUDA_FORCE_PTX_JIT=1 to take the SM80 path.)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
name=${3:-.cudabuild}
dst="$root/$name"
rm -rf "$dst"
mkdir -p "$dst/bin" "$dst/lib"
cp "$1/mimo" "$1/mimo_cuda_check" "$dst/bin/"
cp "$2/mimo" "$dst/bin/mimo-ptx80"
cp "$2/mimo_cuda_check" "$dst/bin/mimo_cuda_check-ptx80"
# Everything ldd resolves except libc/libstdc++ and CUDA's own libraries.
ldd "$1/mimo" | awk '/=> \//{print $3}' | grep -vE 'libc\.so|libm\.so|libpthread|libdl|librt|ld-linux|libstdc\+\+|libgcc_s|libcublas|libcudart' |
  while read -r f; do cp -L "$f" "$dst/lib/"; done
grep -qx "/$name/" "$root/.git/info/exclude" 2>/dev/null || echo "/$name/" >>"$root/.git/info/exclude"
du -sh "$dst"
