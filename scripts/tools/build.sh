#!/usr/bin/env bash
# Builds the tools the packaging tests check files with, from the Go module
# proxy, into .cache/tools (git-ignored), and prints the path of the binary.
# A second call finds the binary there and returns at once.
#
#   scripts/tools/build.sh promtool   # promtool check rules (packaging/prometheus)
#   scripts/tools/build.sh compose    # docker compose config (docker-compose.yml)
#   scripts/tools/build.sh staticcheck  # staticcheck ./... (scripts/test.sh)
#   scripts/tools/build.sh deadcode     # deadcode -test ./... (scripts/test.sh)
#
# systemd-analyze comes from Debian's systemd package (.ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Prometheus tags its Go module v0.<minor>.<patch> for release 3.<minor>.<patch>.
PROMETHEUS_MODULE_VERSION=v0.316.0
COMPOSE_VERSION=v5.6.0
# staticcheck's module version v0.8.2 is its release 2026.2.2; a release
# reads the Go versions out when it was made, so it moves with go.mod's go line.
STATICCHECK_VERSION=v0.8.2
XTOOLS_VERSION=v0.52.0

cache=${AUDITNS_TOOLS_DIR:-$PWD/.cache/tools}

# install_tool NAME MODULE_PATH VERSION: go install MODULE_PATH@VERSION into
# $cache/NAME-VERSION once, and print the binary's path.
install_tool() {
	dir=$cache/$1-$3
	if [ ! -x "$dir/$1" ]; then
		echo "building $1 $3 into $dir (once)" >&2
		mkdir -p "$dir"
		GOFLAGS=-trimpath GOBIN="$dir" go install "$2@$3" >&2
	fi
	echo "$dir/$1"
}

case "${1:-}" in
promtool)
	install_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_MODULE_VERSION"
	;;
compose)
	# Compose's go.mod has exclude directives, so `go install pkg@version`
	# refuses it: build from the downloaded module source instead.
	dir=$cache/compose-$COMPOSE_VERSION
	if [ ! -x "$dir/docker-compose" ]; then
		echo "building docker compose $COMPOSE_VERSION into $dir (once)" >&2
		src=$(go mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -n "$src" ] || { echo "go mod download found no source for compose $COMPOSE_VERSION" >&2; exit 1; }
		work=$(mktemp -d)
		trap 'rm -rf "$work"' EXIT
		cp -r "$src/." "$work" && chmod -R u+w "$work"
		mkdir -p "$dir"
		(cd "$work" && GOFLAGS=-mod=mod go build -trimpath -o "$dir/docker-compose" ./cmd) >&2
	fi
	echo "$dir/docker-compose"
	;;
staticcheck)
	install_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION"
	;;
deadcode)
	install_tool deadcode golang.org/x/tools/cmd/deadcode "$XTOOLS_VERSION"
	;;
*)
	echo "usage: $0 promtool|compose|staticcheck|deadcode" >&2
	exit 2
	;;
esac
