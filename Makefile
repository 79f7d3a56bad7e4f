# GNU make. `make help` lists the targets.

GO      ?= go
BIN     := bin/mqueue
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Directories gofmt looks at: every Go file we own, none that Go tooling skips.
GOFILES = $(shell find . -name '*.go' -not -path './.git/*' -not -path './data/*' -not -path './bin/*' -not -path '*/testdata/*')

.PHONY: all build run test fuzz bench bench-scale fmt fmtcheck vet lint clean help

all: build

help:
	@echo 'make build   build $(BIN) (version $(VERSION))'
	@echo 'make run     build, then serve on :8088 with data in ./data'
	@echo 'make test    gofmt check, go vet, go test -race (unit and end-to-end)'
	@echo 'make fuzz    a bounded fuzzing run of every fuzz target (part of make test)'
	@echo 'make bench   micro-benchmarks, then wrk: mqueue vs a bare-Gin ceiling (needs wrk)'
	@echo 'make bench-scale  throughput, RSS, restart with a 10M-message backlog'
	@echo 'make fmt     gofmt -w the tree'
	@echo 'make lint    gofmt check + go vet'
	@echo 'make clean   remove bin/'

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/mqueue

run: build
	./$(BIN) serve --addr :8088 --data ./data

# The end-to-end tests (HTTP, crash, drain behind HAProxy) live in packages
# too, so ./... covers them. Tests needing a tool (haproxy, keepalived, ...)
# skip when it is missing unless MQUEUE_TEST_REQUIRE_ALL=1 (as in CI).
test: fmtcheck vet
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

# A short, bounded fuzzing run of every fuzz target (their seed corpora also
# run in every plain `go test`). A failing input is written to the package's
# testdata/fuzz/FuzzX/ directory: commit it, it becomes a regression test.
# The budgets are counts of executions (-fuzztime Nx), about 5-10 s each
# here: a duration budget trips golang/go#75804 in go1.26 (a spurious
# "context deadline exceeded" failure when the deadline meets a busy worker,
# seen in `make test`). FuzzScan fsyncs in every execution, hence its small
# count. FUZZTIME=30s (or =N) overrides every budget for a longer run.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(or $(FUZZTIME),300000x) ./segment/
	$(GO) test -run '^$$' -fuzz '^FuzzScan$$' -fuzztime $(or $(FUZZTIME),50x) ./segment/
	$(GO) test -run '^$$' -fuzz '^FuzzQueryParams$$' -fuzztime $(or $(FUZZTIME),40000x) ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(or $(FUZZTIME),20000x) ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzBatch$$' -fuzztime $(or $(FUZZTIME),20000x) ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzSQS$$' -fuzztime $(or $(FUZZTIME),30000x) ./api/sqs/

# The micro-benchmarks (segment, engine, api, the ceiling's handler), then the load benchmark:
# wrk against mqueue in each fsync mode and against the bare-Gin ceiling,
# alternated, medians of 3 rounds; one table with both (~12 min). It needs
# wrk (apt-get install -y wrk). BENCHFLAGS passes flags, e.g. -quick.
# docs/PERFORMANCE.md has the figures and how to read them.
bench:
	@mkdir -p bin
	$(GO) test -run '^$$' -bench . -benchmem ./segment/ ./engine/ ./api/ ./api/sqs/ ./cmd/mqueue-ceiling/ > bin/gobench.txt 2>&1; \
		rc=$$?; cat bin/gobench.txt; exit $$rc
	$(GO) run ./cmd/mqueue-bench -gobench bin/gobench.txt -out bin/bench.md $(BENCHFLAGS)

# The 10-million-message backlog (~1.3 GB, loaded through the engine):
# throughput, RSS and restart time with it against an empty queue.
bench-scale:
	@mkdir -p bin
	$(GO) run ./cmd/mqueue-bench -http=false -gobench off -scale -out bin/bench-scale.md $(BENCHFLAGS)

fmt:
	gofmt -w $(GOFILES)

fmtcheck:
	@out=$$(gofmt -l $(GOFILES)); \
	if [ -n "$$out" ]; then \
		echo 'gofmt: these files are not formatted (run make fmt):'; \
		echo "$$out"; \
		exit 1; \
	fi

vet:
	$(GO) vet ./...

# staticcheck through the module proxy, pinned (not part of make test).
STATICCHECK = honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: fmtcheck vet
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf bin
