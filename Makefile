# edged — build and test. The two commands that matter:
#   go run ./cmd/edged demo     a simulated plant with live values
#   make test                   the whole suite (installs what it needs)

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PKGS    := ./...
# staticcheck, pinned, built by `go run` from the module proxy: nothing to
# install, and go.mod does not change.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test test-deps lint vet fmt-check tidy-check staticcheck bench bench-compare bench-peers soak fuzz clean package

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edged ./cmd/edged

# test: lint, then every test with the race detector. test-deps installs the
# Debian packages the integration tests talk to when they are missing.
test: test-deps lint
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-deps:
	@scripts/test-deps.sh

# lint: gofmt, go vet, staticcheck, and go.mod/go.sum exactly as
# `go mod tidy` leaves them (direct requirements not marked // indirect).
lint: fmt-check vet tidy-check staticcheck

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }

fmt-check:
	@out="$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# bench-compare: the side-by-side scenarios (bench/compare) on edged; the
# table goes to stdout and bench/results/. Longer windows:
#   make bench BENCHFLAGS="-duration 2m"      one scenario: BENCHFLAGS="-scenarios 5k"
# bench-peers: the same run with Telegraf and Node-RED + node-red-contrib-modbus
# beside edged (installed into bench/peers by bench/peers/install.sh), one
# process at a time, so the ratios come from one run.
BENCHFLAGS ?=
AUX_CPU    ?= 0
bench-compare: build
	@command -v mosquitto >/dev/null || scripts/test-deps.sh
	$(GO) build -o bin/bench-compare ./bench/compare
	taskset -c $(AUX_CPU) bin/bench-compare -aux-cpu $(AUX_CPU) $(BENCHFLAGS)

bench-peers: build
	@command -v mosquitto >/dev/null || scripts/test-deps.sh
	bench/peers/install.sh
	$(GO) build -o bin/bench-compare ./bench/compare
	taskset -c $(AUX_CPU) bin/bench-compare -aux-cpu $(AUX_CPU) -gateways edged,telegraf,nodered $(BENCHFLAGS)

# bench: the side-by-side table, then the figures quoted in issue notes.
# Not part of make test.
bench: bench-compare
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	bench/throughput.sh
	$(GO) run ./bench/buffer -n 2000000 -payload 60
	$(GO) run ./bench/buffer -n 2000000 -payload 60 -max-bytes 33554432 -points 6
	$(GO) run ./bench/uplink -n 50000 -pace-n 2500 -duration 10s
	$(GO) run ./bench/bufidle -for 60s

# soak: the long fault variants, figures in the log; not part of make test.
# 200 kill -9 loops of a process writing into a buffer, each followed by an
# open that must account for every message; 200 more with the buffer's
# file system (a tmpfs: root) filled before each kill; then outages of
# every kind with the real defaults. Longer: make soak SOAKFLAGS="-soak.outage=1h -soak.cycles=1"
SOAKFLAGS ?=
soak: test-deps
	$(GO) run ./bench/bufsoak -loops 200
	$(GO) run ./bench/bufsoak -loops 200 -disk-full
	$(GO) test -tags soak -run '^TestSoak' -timeout 6h -count=1 -v ./northbound/ -args $(SOAKFLAGS)

# fuzz: a short run of every fuzz target (corpora live in testdata/fuzz).
fuzz:
	@scripts/fuzz-all.sh 30s

# package: dist/edged_VERSION_{amd64,arm64,armhf}.deb — static binaries, the
# systemd unit, /etc/edged (conffiles) and maintainer scripts, built with nfpm
# (a pinned `go run`, see packaging/build-deb.sh). packaging/packaging_test.go
# installs, upgrades and purges them in a scratch root.
package:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' GO='$(GO)' packaging/build-deb.sh dist amd64 arm64 armhf

clean:
	rm -rf bin dist
