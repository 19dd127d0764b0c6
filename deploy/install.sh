#!/usr/bin/env bash
# Installs udpchat as systemd services: the programs, the units, the system
# users, /etc/udpchat/udpchat.env and the state directories, and generates
# the server keys on first install. Run it as root. Safe to run again (an
# upgrade): binaries, units and docs are replaced; the env file, the keys
# and the database are never touched once they exist.
#
#   ./deploy/install.sh                    build (release) and install into /
#   ./deploy/install.sh --bin-dir DIR      install binaries already built in DIR
#   ./deploy/install.sh --destdir ROOT     install into ROOT (a package or image root)
#   ./deploy/install.sh --prefix /opt/udpchat   binaries in PREFIX/bin (default /usr/local)
#
# DESTDIR in the environment works like --destdir. Into a target root
# nothing is started; into / the units are loaded, not started:
#   systemctl enable --now udpchat.target
set -euo pipefail
cd "$(dirname "$0")/.."

destdir="${DESTDIR:-}"
prefix=/usr/local
bin_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --bin-dir=*) bin_dir="${1#*=}"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
destdir="${destdir%/}"
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
if [ -n "$destdir" ]; then
  mkdir -p "$destdir"
  destdir="$(cd "$destdir" && pwd)"
fi

say() { printf '[install] %s\n' "$*"; }
fail() { printf '[install] %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root: it creates users and sets owners (sudo $0 $*)"
command -v systemd-sysusers >/dev/null 2>&1 || fail "systemd-sysusers is missing: install the systemd package"

programs=(udpchat-keys udpchat-store udpchat-edge udpchat-ai udpchat-web udpchat)
if [ -z "$bin_dir" ]; then
  ./scripts/bootstrap.sh
  say "building release binaries (a few minutes the first time)"
  swift build -c release --static-swift-stdlib
  bin_dir=.build/release
fi
for program in "${programs[@]}"; do
  [ -x "$bin_dir/$program" ] || fail "$bin_dir/$program is missing: build first, or drop --bin-dir"
done

units=(udpchat.target udpchat-keys.service udpchat-store.service udpchat-edge.service udpchat-ai@.service
  udpchat-store@.service udpchat-edge@.service udpchat-web.service)
root() { printf '%s%s' "$destdir" "$1"; }

# Programs and docs.
install -d -m 0755 "$(root "$prefix/bin")" "$(root "$prefix/share/doc/udpchat")"
# Stripped when strip is there: the debug information is most of their size.
strip_flag=""
command -v strip >/dev/null 2>&1 && strip_flag="-s"
for program in "${programs[@]}"; do
  install -m 0755 $strip_flag "$bin_dir/$program" "$(root "$prefix/bin/$program")"
done
install -m 0644 docs/operations.md docs/security.md docs/scaling.md docs/web.md README.md .env.sample "$(root "$prefix/share/doc/udpchat/")"

# Units: the paths in them assume /usr/local; another prefix is written in.
install -d -m 0755 "$(root /etc/systemd/system)" "$(root /etc/sysusers.d)" "$(root /etc/tmpfiles.d)"
for unit in "${units[@]}"; do
  sed "s|/usr/local/|$prefix/|g" "deploy/systemd/$unit" > "$(root "/etc/systemd/system/$unit")"
  chmod 0644 "$(root "/etc/systemd/system/$unit")"
done
install -m 0644 deploy/systemd/udpchat.sysusers "$(root /etc/sysusers.d/udpchat.conf)"
install -m 0644 deploy/systemd/udpchat.tmpfiles "$(root /etc/tmpfiles.d/udpchat.conf)"

# Users and group, in the target root's /etc/passwd and /etc/group.
if [ -n "$destdir" ]; then
  systemd-sysusers --root="$destdir" "$(root /etc/sysusers.d/udpchat.conf)" 2>&1 | sed 's/^/[install] /'
else
  systemd-sysusers /etc/sysusers.d/udpchat.conf 2>&1 | sed 's/^/[install] /'
fi
# Owners by number, read from the target root (its users need not exist here).
id_of() { awk -F: -v name="$2" '$1 == name { print $3 }' "$(root "/etc/$1")"; }
group=$(id_of group udpchat)
keys_user=$(id_of passwd udpchat-keys)
store_user=$(id_of passwd udpchat-store)
# The groups of udpchat-keys and udpchat-store (their units' Group=, which
# systemd also gives their state directories).
keys_group=$(id_of group udpchat-keys-clients)
store_group=$(id_of group udpchat-store-clients)
[ -n "$group" ] && [ -n "$keys_user" ] && [ -n "$store_user" ] && [ -n "$keys_group" ] && [ -n "$store_group" ] \
  || fail "systemd-sysusers did not create the udpchat users and groups"

# Settings: written once, never overwritten (it is the operator's file).
install -d -m 0750 -o 0 -g "$group" "$(root /etc/udpchat)"
if [ -e "$(root /etc/udpchat/udpchat.env)" ]; then
  say "keeping /etc/udpchat/udpchat.env"
  # One exception: the AI workers' socket moved to a directory of its own,
  # out of the store's (which they may no longer enter).
  if grep -q '^JOBS_ENDPOINT=ipc:///run/udpchat-store/jobs.sock$' "$(root /etc/udpchat/udpchat.env)"; then
    sed -i 's|^JOBS_ENDPOINT=ipc:///run/udpchat-store/jobs.sock$|JOBS_ENDPOINT=ipc:///run/udpchat-jobs/jobs.sock|' \
      "$(root /etc/udpchat/udpchat.env)"
    say "moved JOBS_ENDPOINT in /etc/udpchat/udpchat.env to ipc:///run/udpchat-jobs/jobs.sock"
  fi
else
  install -m 0640 -o 0 -g "$group" deploy/systemd/udpchat.env "$(root /etc/udpchat/udpchat.env)"
fi

# State: the keys readable by udpchat-keys alone, the database by udpchat-store alone.
install -d -m 0755 "$(root /var/lib)"
keys_dir="$(root /var/lib/udpchat-keys)"
# Made by root and handed over after the keys are generated (run as root on
# a directory udpchat-keys owns, udpchat-keys generate becomes that user).
[ -d "$keys_dir" ] || install -d -m 0700 "$keys_dir"
install -d -m 0700 -o "$store_user" -g "$store_group" "$(root /var/lib/udpchat-store)"
if [ -e "$keys_dir/server_private_key.pem" ]; then
  say "keeping the identity key in /var/lib/udpchat-keys"
else
  say "first install: generating the server keys"
  # KEY_BITS, if set, comes from the target's env file.
  UDPCHAT_ENV_FILE="$(root /etc/udpchat/udpchat.env)" "$(root "$prefix/bin/udpchat-keys")" generate --dir "$keys_dir"
fi
chown -R "$keys_user:$keys_group" "$keys_dir"
chmod 0700 "$keys_dir"
chmod 0600 "$keys_dir/server_private_key.pem" "$keys_dir/key_encryption_key"
chown -R "$store_user:$store_group" "$(root /var/lib/udpchat-store)"

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
  systemd-tmpfiles --create /etc/tmpfiles.d/udpchat.conf
  systemctl daemon-reload
  say "installed. Start it with: systemctl enable --now udpchat.target"
  say "more AI workers: systemctl enable --now udpchat-ai@9105.service (the instance is its metrics port)"
else
  say "installed into ${destdir:-/} (systemd not running here: nothing loaded or started)"
fi
