#!/usr/bin/env bash
# Builds the three test configurations and runs ctest in each; ends with one
# summary line over all of them.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
pass=0; fail=0; failed_names=()
run_suite() { # name builddir cmake-args...
  local name=$1 dir=$2; shift 2
  echo "== $name: configure + build ($dir)"
  if ! cmake -S . -B "$dir" "$@" >"$dir.cmake.log" 2>&1; then
    cat "$dir.cmake.log"; fail=$((fail+1)); failed_names+=("$name:configure"); return
  fi
  if ! cmake --build "$dir" -j "$JOBS" >"$dir.build.log" 2>&1; then
    grep -E "error|Error" -A3 "$dir.build.log" | head -n 60; fail=$((fail+1)); failed_names+=("$name:build"); return
  fi
  echo "== $name: ctest"
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" 2>&1) | tee "$dir.ctest.log" | grep -vE "^\s*$"
  local p f
  # ctest prints "N/M Test #K: name ....   Passed" or "....***Failed" / "***Timeout" / "***Exception" / "Not Run"
  p=$(grep -cE "Test +#[0-9]+: .*[ .]Passed" "$dir.ctest.log")
  f=$(grep -cE "Test +#[0-9]+: .*(\*\*\*|Failed|Timeout|Exception|Not Run)" "$dir.ctest.log")
  # a ctest run that printed no result lines (crashed, or found no tests) must not pass silently
  if ! grep -qE "tests passed, [0-9]+ tests failed" "$dir.ctest.log"; then f=$((f+1)); fi
  pass=$((pass+p)); fail=$((fail+f))
  [ "$f" -gt 0 ] && failed_names+=("$name")
}
run_suite release build -DCMAKE_BUILD_TYPE=Release
run_suite asan build-asan -DCMAKE_BUILD_TYPE=Debug -DMIMO_SANITIZE=ON
if command -v clang >/dev/null; then
  run_suite fuzz build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DMIMO_FUZZ=ON
fi
# The CUDA backend is compiled (sm_80 + sm_90a, warnings as errors) wherever nvcc
# exists; its GPU tests run on the device machine (tools/gpu-check), not here.
NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
if [ -n "$NVCC" ]; then
  echo "== cuda-build: configure + build (build-cuda-ci, $NVCC)"
  if cmake -S . -B build-cuda-ci -DMIMO_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" >build-cuda-ci.cmake.log 2>&1 &&
     cmake --build build-cuda-ci -j "$JOBS" --target mimo >build-cuda-ci.build.log 2>&1; then
    echo "cuda-build: ok"; pass=$((pass+1))
  else
    tail -n 40 build-cuda-ci.cmake.log build-cuda-ci.build.log; fail=$((fail+1)); failed_names+=("cuda-build")
  fi
fi
[ ${#failed_names[@]} -gt 0 ] && echo "failing suites: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
