#!/usr/bin/env bash
# Installs what the deploy tests (go test ./deploy) need on a fresh Debian
# machine: promtool, from Debian's prometheus package, for the alert rules'
# `promtool check rules` and `promtool test rules`. Does nothing when
# promtool is already there.
set -euo pipefail
command -v promtool >/dev/null 2>&1 && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "== installing prometheus (for promtool)"
$sudo apt-get update -qq
# --no-install-recommends: promtool alone, not the exporters and web assets
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus
# the package starts a Prometheus server where systemd runs services; the tests need none
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $sudo systemctl stop prometheus || true
fi
command -v promtool >/dev/null
