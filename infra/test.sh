#!/usr/bin/env bash
# Tests the CDK app: the template assertions in stack_test.go, then a real
# `cdk synth` with a dummy Lambda binary. Needs Go and Node; works offline once
# `go mod download` and `npm ci` have run here.
#   infra/test.sh            # from anywhere
#   infra/test.sh -run Vpc   # extra args go to `go test`
set -euo pipefail
cd "$(dirname "$0")"

export CDK_DISABLE_VERSION_CHECK=1
# The CDK libraries print a banner on older Node majors; it is noise here.
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="$(node -p 'process.versions.node.split(".")[0]')"

if [ ! -x node_modules/.bin/cdk ]; then
  npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi

start=$SECONDS
go vet ./...
go test -count=1 "$@" ./...
echo "go test: $((SECONDS - start)) s"

# The synth the deploy does, minus credentials and lookups.
dummy="$(mktemp -d)"
out="$(mktemp -d)"
trap 'rm -rf "$dummy" "$out"' EXIT
: >"$dummy/bootstrap"
start=$SECONDS
npx --no-install cdk synth --no-lookups --no-notices -q -o "$out" -c bootstrapDir="$dummy"
test -s "$out/ParleyChat-dev.template.json"
echo "cdk synth: $((SECONDS - start)) s"
