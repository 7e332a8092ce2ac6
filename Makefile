# portvol — build, install, test.
#
#   make install   build the managed plugin and enable it in the local Docker engine
#   make test      lint + unit tests + integration tests (real Docker engine, real S3 server)
#   make bench     long benchmarks against restic and tar|zstd (writes docs/benchmarks.md)

SHELL       := /bin/bash
GO          ?= go
TOOLS       := $(CURDIR)/.tools
TOOLS_BIN   := $(TOOLS)/bin
BUILD       := $(CURDIR)/build

STATICCHECK_VERSION := v0.8.2
VERSITYGW_VERSION   := v1.8.0

# Tests find the S3 server binary here; they start it themselves.
export PORTVOL_VERSITYGW ?= $(TOOLS_BIN)/versitygw

.PHONY: all build test lint unit integration tools bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags nosystemd -o $(BUILD)/portvol ./cmd/portvol

tools: $(TOOLS_BIN)/staticcheck $(TOOLS_BIN)/versitygw

$(TOOLS_BIN)/staticcheck:
	GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(TOOLS_BIN)/versitygw:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

lint: $(TOOLS_BIN)/staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS_BIN)/staticcheck ./...

unit: tools
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

integration: tools
	$(GO) test -count=1 -v -timeout 20m ./integration/...

test: lint unit integration

clean:
	rm -rf $(BUILD)

# S3 tests start versitygw themselves; under make they fail, not skip, if it is missing.
unit integration: export PORTVOL_REQUIRE_S3 = 1

# 1 GiB through transfer/s3 vs plain minio-go against a local versitygw (same run).
.PHONY: bench-transfer
bench-transfer: tools
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./transfer/s3/
