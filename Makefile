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
	@echo "mimo serve on the tiny synthetic model; try (Ctrl-C stops the server):"
	@echo "  curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":16}'"
	./build/mimo serve models/tiny --host 127.0.0.1 --port 8000 --served-model-name tiny

clean:
	rm -rf build build-asan build-fuzz

FORCE:
