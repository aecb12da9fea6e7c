#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to, only when missing, so
# a warm machine stays fast and a fresh one (CI) gets everything.
set -euo pipefail

# command → Debian package
declare -A need=(
	[mosquitto_sub]=mosquitto-clients # independent subscriber in the CLI tests
	[mosquitto]=mosquitto             # the cloud broker in uplink tests (TLS, mTLS)
	[socat]=socat                     # virtual serial pairs for Modbus RTU tests
	[openssl]=openssl                 # certificates for TLS tests
	[systemd-analyze]=systemd         # packaging: verify and score the unit, list syscall groups
	[dpkg-deb]=dpkg                   # packaging: inspect and install the .debs
	[strace]=strace                   # packaging: the syscalls and sockets edged uses vs. the sandbox
	[qemu-aarch64-static]=qemu-user-static # packaging: run the arm64 build
	[qemu-arm-static]=qemu-user-static     # packaging: run the armhf build; buffer tests on 32-bit ARM
	[lintian]=lintian                 # packaging: Debian policy checks of the .debs
	[deb-systemd-helper]=init-system-helpers # packaging: the maintainer scripts, run in a scratch root
	[chromium]=chromium                    # console: the headless browser chromedp drives (/usr/bin/chromium)
)
# python modules → Debian package (an independent Modbus RTU/TCP peer)
declare -A pyneed=(
	[pymodbus]=python3-pymodbus
	[serial]=python3-serial                 # pymodbus' serial (RTU) server needs these two;
	[serial_asyncio]=python3-serial-asyncio # Debian only recommends them
)

# node + npm for the node-opcua test peer (southbound/opcua/testdata/nodeserver)
need[node]=nodejs
need[npm]=npm

missing=()
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
for mod in "${!pyneed[@]}"; do
	/usr/bin/python3 -c "import $mod" >/dev/null 2>&1 || missing+=("${pyneed[$mod]}")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-deps: installing ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# node-opcua, pinned by package-lock.json, only when not installed yet
nodeserver="$(dirname "$0")/../southbound/opcua/testdata/nodeserver"
if [ ! -d "$nodeserver/node_modules/node-opcua" ]; then
	echo "test-deps: npm ci in $nodeserver"
	(cd "$nodeserver" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Eclipse Tahu's Sparkplug B decoder (npm sparkplug-payload), pinned by
# package-lock.json: the independent check of edged's Sparkplug payloads
tahu="$(dirname "$0")/../mapping/sparkplug/testdata/tahu"
if [ ! -d "$tahu/node_modules/sparkplug-payload" ]; then
	echo "test-deps: npm ci in $tahu"
	(cd "$tahu" && npm ci --no-audit --no-fund --loglevel=error)
fi
