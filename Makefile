# mimo: `make` builds build/mimo; `make test` installs what it needs, builds
# (release, ASan+UBSan, libFuzzer) and runs every test; `make run` starts the
# default job on a tiny synthetic checkpoint.
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps test run clean bench
all: build/mimo

build/mimo: FORCE
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

deps:
	@bash scripts/deps.sh

test: deps
	@bash tests/run_all.sh

models/tiny/config.json: build/mimo
	@./build/mimo synth --out models/tiny --preset tiny --seed 1

run: build/mimo models/tiny/config.json
	./build/mimo generate --model models/tiny --tokens 1,2,3,4 --max-tokens 16

clean:
	rm -rf build build-asan build-fuzz

FORCE:
