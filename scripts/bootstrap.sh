#!/usr/bin/env bash
# Installs what udpchat needs to build and run, if it is missing:
# Debian's libzmq3-dev, libsqlite3-dev, libssl-dev and pkg-config. With --test, also
# what the tests need: Python 3 with the `cryptography` package and PyYAML
# (deploy/container/check.py), systemd's tools (systemd-analyze verify,
# systemd-sysusers for the install script) and Prometheus (promtool checks
# each program's /metrics; a Prometheus server runs the dashboard's queries)
# and PostgreSQL (the store's tests run on it as well as on SQLite), and
# Chromium, curl and openssl (the web page's tests drive a real browser and
# make a certificate).
# Safe to run again; installs nothing that is already there.
set -euo pipefail

want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1

say() { printf '[bootstrap] %s\n' "$*" >&2; }

if ! command -v swift >/dev/null 2>&1; then
  say "swift is not on PATH: install Swift 6 (https://www.swift.org/install/linux/) and run this again"
  exit 1
fi

missing=()
for package in libzmq3-dev libsqlite3-dev libssl-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "$want_tests" = 1 ]; then
  command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
  for package in python3-yaml systemd postgresql chromium curl openssl; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
fi

# apt-get install ARGS... as root (through sudo when not root).
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "need root (or sudo) to install: $*"; exit 1; }
    sudo="sudo"
  fi
  local packages=()
  for argument in "$@"; do [[ "$argument" == -* ]] || packages+=("$argument"); done
  say "installing ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq "$@" >/dev/null
}

[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"

# Prometheus alone, without the node exporter it recommends.
if [ "$want_tests" = 1 ] && ! command -v promtool >/dev/null 2>&1; then
  apt_install --no-install-recommends prometheus
fi

if [ "$want_tests" = 1 ] && ! python3 -c 'import cryptography' 2>/dev/null; then
  say "installing the Python cryptography package"
  python3 -m pip install --quiet cryptography 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages cryptography
fi
