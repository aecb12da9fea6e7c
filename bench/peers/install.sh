#!/usr/bin/env bash
# Installs the peers `make bench-peers` measures beside edged, into
# bench/peers (gitignored):
#   bin/telegraf   Telegraf built from source through the Go module proxy with
#                  only the modbus input, the mqtt output and the JSON serializer (Telegraf's
#                  custom-build tags); the Go toolchain its go.mod asks for
#                  comes from the proxy too (GOTOOLCHAIN).
#   node_modules   Node-RED and node-red-contrib-modbus (npm).
# TELEGRAF_VERSION and NODERED_VERSION pick other versions.
set -euo pipefail
cd "$(dirname "$0")"
TELEGRAF_VERSION="${TELEGRAF_VERSION:-v1.40.1}"
NODERED_VERSION="${NODERED_VERSION:-4.1}"
CONTRIB_MODBUS_VERSION="${CONTRIB_MODBUS_VERSION:-5}"

if [ ! -x bin/telegraf ] || ! bin/telegraf --version 2>/dev/null | grep -q "${TELEGRAF_VERSION#v}"; then
	echo "bench-peers: building Telegraf ${TELEGRAF_VERSION} (inputs.modbus, outputs.mqtt, serializers.json)"
	goversion="$(curl -fsS "$(go env GOPROXY | cut -d, -f1)/github.com/influxdata/telegraf/@v/${TELEGRAF_VERSION}.mod" | awk '$1 == "go" && v == "" {v = $2} END {print v}')" # awk reads it all: an early exit fails curl under pipefail
	export GOTOOLCHAIN="go${goversion}+auto"
	case "$goversion" in *.*.*) ;; *) export GOTOOLCHAIN="go${goversion}.0+auto" ;; esac
	# the newest toolchain of that minor version is fine; go picks it up
	# from the module proxy when the local one is older
	src="$(GOFLAGS=-mod=mod go mod download -json "github.com/influxdata/telegraf@${TELEGRAF_VERSION}" | awk -F'"' '$2 == "Dir" {print $4}')"
	here="$PWD"; build="$(mktemp -d)"; trap 'rm -rf "$build"' EXIT; mkdir -p bin && cp -r "$src" "$build/telegraf" && chmod -R u+w "$build/telegraf"
	(cd "$build/telegraf" && go build -trimpath -tags custom,inputs.modbus,outputs.mqtt,serializers.json \
		-ldflags "-s -w -X github.com/influxdata/telegraf/internal.Version=${TELEGRAF_VERSION#v}" \
		-o "$here/bin/telegraf" ./cmd/telegraf)
fi
bin/telegraf --version

if [ ! -d node_modules/node-red ] || [ ! -d node_modules/node-red-contrib-modbus ]; then
	echo "bench-peers: npm install node-red@${NODERED_VERSION} node-red-contrib-modbus@${CONTRIB_MODBUS_VERSION}"
	# node-red-contrib-modbus 5.4x+ depends on its fork of modbus-serial by a
	# tarball URL outside the npm registry; the fork's upstream on npm
	# stands in for it (the same client API for Modbus TCP).
	cat > package.json <<JSON
{"name": "edged-bench-peers", "private": true,
 "dependencies": {"node-red": "${NODERED_VERSION}", "node-red-contrib-modbus": "${CONTRIB_MODBUS_VERSION}"},
 "overrides": {"@openp4nr/modbus-serial": "npm:modbus-serial@^8.0.23"}}
JSON
	npm install --no-audit --no-fund --loglevel=error
fi
node -e 'console.log("node-red " + require("./node_modules/node-red/package.json").version + ", node-red-contrib-modbus " + require("./node_modules/node-red-contrib-modbus/package.json").version)'
