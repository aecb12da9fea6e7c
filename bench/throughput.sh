#!/usr/bin/env bash
# Prints edged's pipeline throughput: 10 Modbus TCP devices × 500 float32
# through the driver, mapping and embedded broker to mosquitto_sub, with
# edged on one core (GOMAXPROCS=1, CPU 0) and the simulators on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mosquitto_sub >/dev/null || scripts/test-deps.sh
go build -o bin/bench-pipeline ./bench/pipeline
GOMAXPROCS=1 taskset -c 0 bin/bench-pipeline -sim-cpu 1 -devices "${DEVICES:-10}" -tags "${TAGS:-500}" \
	-poll "${POLL:-1ms}" -duration "${DURATION:-15s}" "$@"
