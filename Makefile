# GNU make. `make help` lists the targets.

GO      ?= go
BIN     := bin/mqueue
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Directories gofmt looks at: every Go file we own, none that Go tooling skips.
GOFILES = $(shell find . -name '*.go' -not -path './.git/*' -not -path './data/*' -not -path './bin/*' -not -path '*/testdata/*')

.PHONY: all build run test bench fmt fmtcheck vet lint clean help

all: build

help:
	@echo 'make build   build $(BIN) (version $(VERSION))'
	@echo 'make run     build, then serve on :8088 with data in ./data'
	@echo 'make test    gofmt check, go vet, go test -race (unit and end-to-end)'
	@echo 'make bench   micro-benchmarks of segment/ and engine/'
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

# Placeholder: the micro-benchmarks only. The full load benchmark (wrk
# against a running node) is a later issue.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./segment/ ./engine/

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

lint: fmtcheck vet

clean:
	rm -rf bin
