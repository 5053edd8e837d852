#!/usr/bin/env bash
# Installs what TestKubeDryRun (go test ./deploy -run TestKubeDryRun) needs on
# a fresh Debian machine with Go: etcd from Debian's etcd-server package, and
# kube-apiserver built from k8s.io/kubernetes through the Go module proxy.
#
# k8s.io/kubernetes is not made to be required as a module: its go.mod pins
# the k8s.io staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and
# replaces them with ./staging/src/k8s.io/NAME. So a temporary module requires
# k8s.io/kubernetes vX.Y.Z and replaces every one of those staging modules with
# its published v0.Y.Z, the list read from k8s.io/kubernetes' own go.mod.
#
# The binary goes to $(go env GOPATH)/bin/kube-apiserver (KUBE_APISERVER_BIN
# overrides), where the test looks for it. Nothing is written in the repository.
# Does nothing when the binary and etcd are already there.
#
#   KUBE_VERSION=v1.37.2 bash scripts/deps-kube.sh
set -euo pipefail

kube_version="${KUBE_VERSION:-v1.37.2}"
staging_version="v0.${kube_version#v1.}"
bin="${KUBE_APISERVER_BIN:-$(go env GOPATH)/bin/kube-apiserver}"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! command -v etcd >/dev/null 2>&1; then
  echo "== installing etcd (Debian's etcd-server)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends etcd-server
  # the package starts an etcd where systemd runs services; the test starts its own
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    $sudo systemctl stop etcd || true
  fi
fi

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "Kubernetes $kube_version"; then
  echo "== $bin is kube-apiserver $kube_version already"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "== kube-apiserver $kube_version (staging modules $staging_version) in $work"
go mod init kiln.local/kube-apiserver >/dev/null 2>&1
modfile="$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[ -f "$modfile" ] || { echo "no go.mod for k8s.io/kubernetes@$kube_version" >&2; exit 1; }
go mod edit -require="k8s.io/kubernetes@$kube_version"
# every "k8s.io/NAME => ./staging/src/k8s.io/NAME" of k8s.io/kubernetes' go.mod
staging="$(sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*|\1|p' "$modfile")"
[ -n "$staging" ] || { echo "no staging replace directives in $modfile" >&2; exit 1; }
for m in $staging; do
  go mod edit -replace="$m=$m@$staging_version"
done
# a main package that is kube-apiserver's own, so that go mod tidy keeps what it needs
cat >tools.go <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
go mod tidy >/dev/null
start=$(date +%s)
pkg=k8s.io/component-base/version
go build -trimpath -o "$bin.tmp" \
  -ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$kube_version" | cut -d. -f2)" \
  k8s.io/kubernetes/cmd/kube-apiserver
mv "$bin.tmp" "$bin"
echo "== built $bin in $(( $(date +%s) - start )) s on $(nproc) cores: $("$bin" --version)"
