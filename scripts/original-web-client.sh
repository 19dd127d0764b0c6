#!/usr/bin/env bash
# Runs the original web client's helper modules (client/src/helpers:
# utils.js, secureTransport.js, messageRouter.js, unchanged) in Node against
# udpchat through udpchat-web's /ws, and through the original connector
# (connector/connector.js) for comparison: two people log in, make and join
# a room, and write to each other (Tests/Interop/original_web_client.mjs).
#
#   ORIGINAL_SOURCE=PATH scripts/original-web-client.sh [--bin-dir DIR] [--rev REV]
#
# PATH: a clone (or bare repository) of github.com/agonych/udp_chat; REV
# its revision (default 4ef9cd9). DIR: the built programs (default
# .build/debug). Installs Debian's nodejs, node-ws and node-uuid if
# missing. Everything runs on free loopback ports and is stopped by PID.
# Exits 0 when both bridges carried the whole exchange.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=.build/debug
rev=4ef9cd9
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --rev) rev="$2"; shift 2 ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
say() { printf '[original-web-client] %s\n' "$*" >&2; }
[ -n "${ORIGINAL_SOURCE:-}" ] || { say "set ORIGINAL_SOURCE to a clone of github.com/agonych/udp_chat"; exit 2; }
missing=()
for package in nodejs node-ws node-uuid; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/udpchat-orig-web-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

git_dir="$ORIGINAL_SOURCE"
[ -d "$git_dir/.git" ] && git_dir="$git_dir/.git"
[ -d "$git_dir/repo" ] && git_dir="$git_dir/repo"
mkdir -p "$work/helpers" "$work/connector/node_modules/dotenv"
for helper in utils secureTransport messageRouter; do
  git --git-dir="$git_dir" show "$rev:client/src/helpers/$helper.js" > "$work/helpers/$helper.js"
done
echo '{"type": "module"}' > "$work/helpers/package.json"
git --git-dir="$git_dir" show "$rev:connector/connector.js" > "$work/connector/connector.js"
# dotenv is not in Debian; the connector only calls config(), and its
# settings come from the environment here.
echo 'module.exports = { config() {} };' > "$work/connector/node_modules/dotenv/index.js"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_line() {  # wait_line FILE PREFIX: the line, within 30 s
  for _ in $(seq 1 300); do grep -m1 "^$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  say "no '$2' in $1"; cat "$1" >&2; return 1
}

export UDPCHAT_ENV_FILE=/dev/null DATA_DIR="$work/data" LOG_LEVEL=warning SERVER_PORT=0 \
  KEYS_METRICS_PORT=0 STORE_METRICS_PORT=0 EDGE_METRICS_PORT=0 WEB_METRICS_PORT=0 RATE_LIMIT_EXEMPT=127.0.0.1
"$bin_dir/udpchat-keys" generate >/dev/null
"$bin_dir/udpchat-keys" > "$work/keys.out" 2> "$work/keys.err" & pids+=($!)
"$bin_dir/udpchat-store" > "$work/store.out" 2> "$work/store.err" & pids+=($!)
wait_line "$work/keys.out" "udpchat-keys ready" >/dev/null
wait_line "$work/store.out" "udpchat-store ready" >/dev/null
"$bin_dir/udpchat-edge" > "$work/edge.out" 2> "$work/edge.err" & pids+=($!)
edge_port=$(wait_line "$work/edge.out" "udpchat-edge ready" | sed -n 's/.*udp=[^ ]*:\([0-9]*\).*/\1/p')
WS_PORT=0 UDP_SERVER_PORT=$edge_port "$bin_dir/udpchat-web" > "$work/web.out" 2> "$work/web.err" & pids+=($!)
web_url=$(wait_line "$work/web.out" "udpchat-web ready" | sed -n 's/.*url=http:\/\/\([^ ]*\)\/.*/ws:\/\/\1\/ws/p')
connector_port=$(free_port)
(cd "$work/connector" && NODE_PATH=/usr/share/nodejs WS_PORT=$connector_port UDP_SERVER_HOST=127.0.0.1 UDP_SERVER_PORT=$edge_port \
  exec node connector.js > "$work/connector.out" 2>&1) & pids+=($!)
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$connector_port") 2>/dev/null && break; sleep 0.1; done

status=0
for bridge in "udpchat-web $web_url" "connector.js ws://127.0.0.1:$connector_port/ws"; do
  name=${bridge% *}; url=${bridge#* }
  # The helpers log every packet; their log goes to a file, the verdict is the last line.
  if (cd Tests/Interop && node --import ./extensionless_imports.mjs original_web_client.mjs "$work/helpers" "$url" "${name%.js}") \
    > "$work/$name.log" 2>&1; then
    result=$(tail -1 "$work/$name.log")
    say "through $name: $result"
  else
    say "FAILED through $name: $(tail -5 "$work/$name.log")"; status=1
  fi
done
exit $status
