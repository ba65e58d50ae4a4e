# pullgate: see README.md. `make demo` and `make test` are the two commands a
# newcomer runs; CI runs .ci/run, which runs `make test`.
GO        ?= go
BIN       ?= bin/pullgate
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
FUZZTIME  ?= 3s
LONGFUZZ  ?= 60s
TESTFLAGS ?= -timeout 20m
export GOFLAGS ?= -mod=mod

.PHONY: all build demo test unit fuzz-smoke fuzz bench soak lint tools scenarios model-gate clean

all: build

# pullgate, and beside it the reference signal provider
# (docs/signals-vuln.md), whose version is its own (provider.version in
# its answers), not pullgate's.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/pullgate
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(dir $(BIN))pullgate-signal-vuln ./cmd/pullgate-signal-vuln

demo:
	$(GO) run ./cmd/pullgate demo

# Real clients and peers for the end-to-end tests (crane, oras, skopeo,
# cosign v2/v3, distribution's registry, containerd).
tools:
	bash test/tools/install.sh

# The whole suite: vet, unit + end-to-end tests with real clients, and a
# short run of every fuzz target.
test: tools lint unit fuzz-smoke

unit:
	PULLGATE_UI_SCREENSHOT_DIR=test/out $(GO) test $(TESTFLAGS) ./...

fuzz-smoke:
	FUZZTIME=$(FUZZTIME) bash test/fuzz.sh

fuzz:
	FUZZTIME=$(LONGFUZZ) bash test/fuzz.sh

bench: build tools
	bash test/bench/run.sh

# Not in CI: the load mix of test/load at a steady rate for SOAK_DURATION
# (client auth on: tokens expire and are renewed every minute); RSS,
# goroutines and fds of pullgate sampled every SOAK_SAMPLE must stay flat.
# Report: test/out/bench/soak.md (figures in docs/benchmarks.md).
SOAK_DURATION ?= 30m
SOAK_CLIENTS  ?= 500
SOAK_RATE     ?= 200
SOAK_PHASES   ?= token
SOAK_SAMPLE   ?= 10s
soak: tools
	mkdir -p test/out/bench
	$(GO) test -count=1 -run '^TestLoad$$' -timeout 90m -v ./test/load/ -args \
	  -load.soak -load.duration=$(SOAK_DURATION) -load.clients=$(SOAK_CLIENTS) -load.rate=$(SOAK_RATE) \
	  -load.phases=$(SOAK_PHASES) -load.sample=$(SOAK_SAMPLE) -load.out=$(CURDIR)/test/out/bench/soak.md

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin

scenarios:
	mkdir -p test/out
	PULLGATE_WRITE_SCENARIOS=1 $(GO) test -count=1 -run TestScenarios -v ./test/scenarios/ | tee test/out/scenarios.txt

# Rewrites the real-corpus table of docs/model-gate.md from
# ../shared/model-corpus (every file bytes only and as declared, under a
# strict model rule).
model-gate:
	PULLGATE_WRITE_MODEL_GATE=1 $(GO) test -count=1 -run TestRealModelCorpus ./verify/content/
