#!/usr/bin/env bash
# Builds the edged .deb packages with nfpm.
#
#   packaging/build-deb.sh OUT_DIR [ARCH...]     ARCH: amd64 arm64 armhf (default: all)
#
# VERSION and COMMIT (environment) are stamped into the binary as `make build`
# does; the package version is VERSION without a leading v, made valid for
# dpkg (untagged builds become 0.0.0+git<describe>). The packaged
# /etc/edged/edged.toml is configs/examples/edged.toml with its devices and
# upstreams (every [[table]]) commented out, so a fresh install runs as is and
# connects to nothing.
#
# nfpm runs as a pinned `go run …@version` (no downloaded binary, go.mod is
# not touched) with GOARCH/GOARM removed from its environment, so that nfpm
# itself is built for this machine whatever the caller exported.
set -euo pipefail

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [amd64|arm64|armhf ...]" >&2; exit 2; }
out=$1
shift
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 armhf)

repo=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
VERSION=${VERSION:-$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)}

# dpkg wants a version that starts with a digit; '-' would start a Debian
# revision, so it becomes '+' (first) and '.' (the rest): v1.2.3-4-gabc-dirty
# → 1.2.3+4.gabc.dirty.
deb_version() {
	local v=${1#v}
	if [[ $v =~ ^[0-9]+(\.[0-9]+)+ ]]; then
		v=${v/-/+}
	else # a commit hash (it may start with a digit) or "dev": not a release
		v="0.0.0+git$v"
	fi
	v=${v//-/.}
	printf '%s\n' "$v" | tr -c 'A-Za-z0-9.+~\n' '.'
}
DEB_VERSION=$(deb_version "$VERSION")

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The packaged config: the example with everything from its first [[table]]
# (device, upstream) on, with the comment block that introduces it, commented
# out.
packaged_config() {
	cat <<'HEAD'
# /etc/edged/edged.toml — installed by the edged package. This is a conffile:
# upgrades never overwrite your edits. Check it after editing, then restart:
#   edged validate -c /etc/edged/edged.toml && systemctl restart edged
#
# As shipped it runs without devices: the local MQTT broker listens on
# 127.0.0.1:1883 and publishes the gateway status. Set the gateway id, then
# add devices: the examples at the end work once uncommented and adapted.
#
# Secrets: use ${ENV} or a systemd credential rather than writing them here,
# e.g. password_file = "${CREDENTIALS_DIRECTORY}/uplink-password" (see
# /lib/systemd/system/edged.service). Logs: journalctl -u edged

HEAD
	awk '
		NR == 1 && /^# edged example configuration/ { line[NR] = "# Based on configs/examples/edged.toml in the edged sources."; next }
		{ line[NR] = $0 }
		/^\[\[/ && !first { first = NR }
		END {
			start = first ? first : NR + 1
			while (first && start > 1 && line[start-1] ~ /^#/) start--
			for (i = 1; i < start; i++) print line[i]
			if (first) print "# ---- Examples: remove the leading \"# \" to use them ----"
			for (i = start; i <= NR; i++) print (line[i] == "" ? "" : "# " line[i])
		}' "$repo/configs/examples/edged.toml"
}

# The Debian changelog of a native package: one entry for the version built,
# dated by its commit (reproducible), pointing at the history.
changelog() {
	local when
	when=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
	cat <<EOF
edged ($DEB_VERSION) unstable; urgency=medium

  * edged $VERSION, commit $COMMIT. The changes are the git history of
    https://github.com/edged-gw/edged up to that commit.

 -- edged project <edged@users.noreply.github.com>  $(LC_ALL=C date -u -R -d "@$when")
EOF
}

for arch in "${arches[@]}"; do
	case "$arch" in
	amd64) goarch=amd64 goarm="" nfpm_arch=amd64 ;;
	arm64) goarch=arm64 goarm="" nfpm_arch=arm64 ;;
	armhf) goarch=arm goarm=7 nfpm_arch=arm7 ;; # Debian armhf: ARMv7, hard float
	*) echo "$0: unknown architecture $arch (want amd64, arm64 or armhf)" >&2; exit 2 ;;
	esac
	stage="$work/$arch"
	mkdir -p "$stage/maps" "$stage/scripts"
	(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
		"$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
		-o "$stage/edged" ./cmd/edged)
	cp "$repo/packaging/edged.service" "$repo/packaging/default" "$repo/packaging/lintian-overrides" "$stage/"
	(cd "$repo" && "$GO" run ./packaging/gencopyright "$stage/edged") >"$stage/copyright"
	changelog | gzip -9n >"$stage/changelog.gz"
	gzip -9n <"$repo/packaging/edged.1" >"$stage/edged.1.gz"
	cp "$repo/packaging/scripts/postinst" "$repo/packaging/scripts/prerm" "$repo/packaging/scripts/postrm" "$stage/scripts/"
	cp "$repo"/configs/examples/maps/*.toml "$stage/maps/"
	packaged_config >"$stage/edged.toml"
	(cd "$stage" && env -u GOARCH -u GOARM NFPM_ARCH=$nfpm_arch DEB_VERSION=$DEB_VERSION \
		"$GO" run "$NFPM" package --config "$repo/packaging/nfpm.yaml" --packager deb --target "$out/")
done
