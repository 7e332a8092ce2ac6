# portvol — build, install, test.
#
#   make install   build the managed plugin and enable it in the local Docker engine
#   make push REGISTRY=host[:port]/name [TAG=...]
#                  build the plugin and push it to a registry (docker plugin install by name)
#   make test      lint + unit tests + integration tests (real Docker engine, real S3 server)
#   make bench     long benchmarks against restic and tar|zstd (writes docs/benchmarks.md)

SHELL       := /bin/bash
GO          ?= go
TOOLS       := $(CURDIR)/.tools
TOOLS_BIN   := $(TOOLS)/bin
BUILD       := $(CURDIR)/build

STATICCHECK_VERSION := v0.8.2
VERSITYGW_VERSION   := v1.8.0
REGISTRY_VERSION    := v3.1.2

# The version stamped into the binary (portvol version, the plugin's start
# log, the default tag of make push): git describe of this checkout, or
# VERSION=... to name a build yourself. The go command records the commit
# itself in a clone (-buildvcs=auto overrides a GOFLAGS=-buildvcs=false),
# but not in a git worktree (.git is a file there): the revision stamps
# stand in.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null)
endif
VCS_REVISION := $(shell git rev-parse HEAD 2>/dev/null)
VCS_MODIFIED := $(if $(shell git status --porcelain --untracked-files=no 2>/dev/null),true,false)
ifneq ($(shell printf '%s' '$(VERSION)' | tr -d 'A-Za-z0-9._+-'),)
$(error VERSION=$(VERSION): use letters, digits, '.', '_', '+' and '-' only)
endif
LDFLAGS  := $(if $(VERSION),-X main.version=$(VERSION)) \
            $(if $(VCS_REVISION),-X main.vcsRevision=$(VCS_REVISION) -X main.vcsModified=$(VCS_MODIFIED))
GO_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -tags nosystemd -ldflags '$(strip $(LDFLAGS))'

# Tests find the S3 server and registry binaries here; they start them themselves.
export PORTVOL_VERSITYGW ?= $(TOOLS_BIN)/versitygw
export PORTVOL_REGISTRY  ?= $(TOOLS_BIN)/registry

.PHONY: all build test lint unit integration tools bench clean plugin-rootfs plugin install uninstall push push-check version

# The managed plugin: its name is the driver name (docker volume create -d portvol),
# and its state (database and volume data) lives in PLUGIN_STATE_DIR on the host.
PLUGIN_NAME      ?= portvol
PLUGIN_STATE_DIR ?= /var/lib/portvol
PLUGIN_DIR       := $(BUILD)/plugin
CA_BUNDLE        ?= /etc/ssl/certs/ca-certificates.crt

all: build

build:
	$(GO_BUILD) -o $(BUILD)/portvol ./cmd/portvol

tools: $(TOOLS_BIN)/staticcheck $(TOOLS_BIN)/versitygw $(TOOLS_BIN)/registry

$(TOOLS_BIN)/staticcheck:
	GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(TOOLS_BIN)/versitygw:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

# The CNCF distribution registry: the install-by-name test pushes the
# plugin to it and installs it from there.
$(TOOLS_BIN)/registry:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/distribution/distribution/v3/cmd/registry@$(REGISTRY_VERSION)

lint: $(TOOLS_BIN)/staticcheck
	@if [ -n "$$(git ls-files .tools)" ]; then echo ".tools is tracked: git rm --cached .tools (it is each checkout's own build of the tools)"; exit 1; fi
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS_BIN)/staticcheck ./...

unit: tools
	MAKEFLAGS= $(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /integration)

integration: tools
	MAKEFLAGS= $(GO) test -count=1 -v -timeout 20m ./integration/...

# The unit and integration suites run side by side: the integration tests
# spend most of their time waiting on dockerd, PostgreSQL and lease TTLs,
# the unit tests on the CPU, so together they take little more than the
# longer of the two (each suite's output is printed whole when it ends).
# The suites run with MAKEFLAGS emptied: tests that run make themselves
# (make version, make plugin) must not inherit this make's job server.
test: lint
	$(MAKE) --no-print-directory -j2 --output-sync=target unit integration

clean:
	rm -rf $(BUILD)

# The plugin's rootfs is the static binary plus the directories it mounts on,
# a CA bundle for S3 over TLS, and mkfs.btrfs with the libraries ldd lists
# (to format the volume pool): no base image, no registry.
MKFS_BTRFS ?= $(shell command -v mkfs.btrfs 2>/dev/null || echo /usr/sbin/mkfs.btrfs)
plugin-rootfs:
	rm -rf $(PLUGIN_DIR)
	mkdir -p $(PLUGIN_DIR)/rootfs/run/docker/plugins $(PLUGIN_DIR)/rootfs/mnt/volumes \
	  $(PLUGIN_DIR)/rootfs/var/lib/portvol $(PLUGIN_DIR)/rootfs/etc/ssl/certs $(PLUGIN_DIR)/rootfs/tmp
	chmod 1777 $(PLUGIN_DIR)/rootfs/tmp
	$(GO_BUILD) -o $(PLUGIN_DIR)/rootfs/portvol ./cmd/portvol
	if [ -f $(CA_BUNDLE) ]; then cp $(CA_BUNDLE) $(PLUGIN_DIR)/rootfs/etc/ssl/certs/ca-certificates.crt; \
	  else echo "warning: no CA bundle at $(CA_BUNDLE): S3 over TLS will fail" >&2; fi
	if [ -x $(MKFS_BTRFS) ]; then \
	  mkdir -p $(PLUGIN_DIR)/rootfs/usr/sbin && cp $(MKFS_BTRFS) $(PLUGIN_DIR)/rootfs/usr/sbin/mkfs.btrfs && \
	  for lib in $$(ldd $(MKFS_BTRFS) | grep -o '/[^ ]*' | sort -u); do \
	    mkdir -p $(PLUGIN_DIR)/rootfs$$(dirname $$lib) && cp -L $$lib $(PLUGIN_DIR)/rootfs$$lib || exit 1; done; \
	  else echo "warning: no mkfs.btrfs at $(MKFS_BTRFS) (apt-get install btrfs-progs): the plugin cannot make a btrfs pool" >&2; fi
	cp plugin/config.json $(PLUGIN_DIR)/config.json

# plugin replaces any plugin of the same name (disable -f keeps running
# containers' mounts; volumes and their data stay in PLUGIN_STATE_DIR).
plugin: plugin-rootfs
	docker plugin disable -f $(PLUGIN_NAME) >/dev/null 2>&1 || true
	docker plugin rm -f $(PLUGIN_NAME) >/dev/null 2>&1 || true
	docker plugin create $(PLUGIN_NAME) $(PLUGIN_DIR)

# --timeout 0: no enable-time cap on calls, which is also how dockerd runs
# the plugin after an engine restart; portvol bounds its own calls (25 s).
install: plugin
	mkdir -p $(PLUGIN_STATE_DIR)
	docker plugin set $(PLUGIN_NAME) state.source=$(PLUGIN_STATE_DIR)
	docker plugin enable --timeout 0 $(PLUGIN_NAME)
	@echo "portvol installed as '$(PLUGIN_NAME)'; try: docker volume create -d $(PLUGIN_NAME) v1"

uninstall:
	docker plugin disable -f $(PLUGIN_NAME) >/dev/null 2>&1 || true
	docker plugin rm -f $(PLUGIN_NAME)
	@echo "volume data is kept in $(PLUGIN_STATE_DIR)"

# TestSwarm's longer variants (a start-first update left to Swarm: minutes).
.PHONY: test-swarm-long
test-swarm-long: export PORTVOL_REQUIRE_S3 = 1
test-swarm-long: tools
	$(GO) test -count=1 -run '^TestSwarm$$' -v -timeout 30m ./integration/ -swarm.long

version:
	@echo $(or $(VERSION),unknown)

# make push REGISTRY=host[:port]/name [TAG=...]: the plugin built from this
# checkout, stamped with VERSION, pushed as REGISTRY:TAG (TAG defaults to
# VERSION, with '+' made '-': tags allow no '+'). The engine needs push
# access to the registry (docker login; an http registry must be in the
# engine's insecure-registries, 127.0.0.0/8 is by default). The local copy
# that docker plugin push needs is removed afterwards, so that this engine
# can install the same name from the registry.
TAG ?= $(subst +,-,$(VERSION))
PUSH_REF = $(REGISTRY):$(TAG)
push: push-check plugin-rootfs
	docker plugin create $(PUSH_REF) $(PLUGIN_DIR)
	docker plugin push $(PUSH_REF) || { docker plugin rm $(PUSH_REF) >/dev/null; exit 1; }
	docker plugin rm $(PUSH_REF) >/dev/null
	@echo "pushed $(PUSH_REF) (portvol $(VERSION)); install it with:"
	@echo "  docker plugin install --grant-all-permissions --alias portvol $(PUSH_REF) state.source=/var/lib/portvol"

push-check:
	@[ -n "$(REGISTRY)" ] || { echo "make push: set REGISTRY=host[:port]/name, e.g. REGISTRY=registry.example.com/portvol" >&2; exit 2; }
	@[[ "$(REGISTRY)" != */*:* ]] || { echo "make push: REGISTRY=$(REGISTRY) has a tag: give the tag as TAG=..." >&2; exit 2; }
	@[[ "$(TAG)" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$$ ]] || { echo "make push: TAG='$(TAG)' is no valid tag (letters, digits, '_', '.', '-'; at most 128): set TAG=... (no git checkout to take the version from?)" >&2; exit 2; }
	@if docker plugin inspect $(PUSH_REF) >/dev/null 2>&1; then \
	  echo "make push: this engine already has a plugin named $(PUSH_REF) (installed from the registry?): push another TAG, or remove it first (docker plugin disable -f $(PUSH_REF); docker plugin rm $(PUSH_REF))" >&2; exit 1; fi

# S3 tests start versitygw themselves; under make they fail, not skip, if it is missing.
unit integration: export PORTVOL_REQUIRE_S3 = 1

# 1 GiB through transfer/s3 vs plain minio-go against a local versitygw (same run).
.PHONY: bench-transfer
bench-transfer: tools
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./transfer/s3/

# Snapshot benchmarks: portvol vs restic vs tar | zstd | PUT against one local
# versitygw, PostgreSQL (pgbench -s 50) and incompressible workloads. Needs root
# (page cache drops, PostgreSQL as the postgres user; installs postgresql restic
# zstd with apt-get if missing); about 30 minutes. Writes docs/benchmarks.md
# between its bench:snapshots markers. Not part of make test.
BENCH_FLAGS ?=
.PHONY: bench-snapshots
bench-snapshots: build tools
	$(GO) run ./bench -portvol $(BUILD)/portvol -versitygw $(TOOLS_BIN)/versitygw -work bench/work -out docs/benchmarks.md $(BENCH_FLAGS)

# Handoff of a PostgreSQL database (pgbench -i -s 50) between two Docker hosts
# on this machine: docker stop on A until PostgreSQL on B accepts connections,
# cold and pre-staged; writes the bench:handoff section of docs/benchmarks.md.
.PHONY: bench-handoff
bench-handoff: tools
	$(GO) test -tags handoffbench -count=1 -run '^TestHandoffBenchmark$$' -v -timeout 90m ./integration/

# Small scattered changes on 1 GiB and 4 GiB volumes of half-empty pages (file://
# store, snapshot engine in-process): snapshot with and without a ChangeSource,
# bytes read and uploaded, pre-staged and cold restores against dd + sync. Needs
# root (page cache drops); writes the bench:pages section of docs/benchmarks.md.
BENCH_PAGES_FLAGS ?=
.PHONY: bench-pages
bench-pages:
	$(GO) run ./bench/pages -work bench/work/pages -out docs/benchmarks.md $(BENCH_PAGES_FLAGS)

# The measurements behind snapshot format 2 (chunk size, compressor, write
# sizes): prints markdown tables. Makes its own PostgreSQL data set with a
# random-text filler column under bench/work/formatstudy.
.PHONY: bench-format
bench-format:
	bash bench/formatstudy/mkpg.sh bench/work/formatstudy
	$(GO) run ./bench/formatstudy -pg-before bench/work/formatstudy/pg-before -pg-after bench/work/formatstudy/pg-after
	$(GO) run ./bench/formatstudy -disk bench/work/formatstudy

# Prune of a local store of 1,000 snapshots (10 volumes × 100) holding 100k
# chunks, half of them forgotten: wall time and peak RSS of portvol prune's mark
# and sweep runs, against reading every manifest once in the same run.
.PHONY: bench-prune
bench-prune: build
	$(GO) test -tags prunebench -count=1 -run '^TestPruneBenchmark$$' -v -timeout 60m ./prune/ -portvol $(BUILD)/portvol

# Every long benchmark: snapshots against restic and tar, small scattered
# changes, the Docker handoff, btrfs volumes, prune.
bench: bench-snapshots bench-pages bench-handoff bench-volfs bench-prune

# PostgreSQL (pgbench -s 20 -c 4) on btrfs subvolumes in portvol's pool vs
# an ext4 directory on the same disk, and the pause a read-only snapshot
# every 2 s imposes; writes the bench:volfs section of docs/benchmarks.md.
# Needs root, postgresql-15, btrfs-progs and loop devices; ~7 minutes a round.
BENCH_VOLFS_FLAGS ?=
.PHONY: bench-volfs
bench-volfs:
	$(GO) run ./bench/volfs -work bench/work/volfs -out docs/benchmarks.md $(BENCH_VOLFS_FLAGS)
