#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short while each (default
# 30s). New interesting inputs land in the package's testdata/fuzz corpus,
# which is committed; `go test` replays that corpus on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
time="${1:-30s}"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "== $pkg $fn ($time)"
		go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$time" -fuzzminimizetime 5s "$pkg"
	done
done
