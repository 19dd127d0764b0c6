#!/usr/bin/env bash
# Runs the whole system in the foreground: udpchat-keys, udpchat-store,
# udpchat-ai, udpchat-edge and udpchat-web (the web page, relaying to this
# edge), with their logs prefixed by name. Ctrl-C stops them all.
#
# On first use it installs what is missing (Debian packages), builds, and
# generates the server keys. Settings come from the environment and ./.env
# (see .env.sample); data goes under ./data unless DATA_DIR says otherwise.
#
#   ./deploy/run.sh              install if needed, build, run
#   ./deploy/run.sh --no-build   run what is built (BIN_DIR, default .build/debug)
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
for argument in "$@"; do
  case "$argument" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option: $argument" >&2; exit 2 ;;
  esac
done

say() { printf '[run  ] %s\n' "$*"; }

if [ "$build" = 1 ]; then
  ./scripts/bootstrap.sh
  say "building (the first build takes a few minutes)"
  swift build
fi
bin="${BIN_DIR:-.build/debug}"
for program in udpchat-keys udpchat-store udpchat-ai udpchat-edge udpchat-web; do
  [ -x "$bin/$program" ] || { say "$bin/$program is missing: run without --no-build"; exit 1; }
done

# Keys are made once, on first run; never silently replaced (clients pin them).
if ! "$bin/udpchat-keys" show >/dev/null 2>&1; then
  say "first run: generating the server keys"
  "$bin/udpchat-keys" generate
fi

ready_dir=$(mktemp -d)
pids=()
names=()

# Prefixes each line with the program's name and notes its ready line.
prefix() {
  local name=$1 line
  while IFS= read -r line; do
    printf '[%-5s] %s\n' "$name" "$line"
    case "$line" in "udpchat-$name ready"*) printf '%s\n' "$line" > "$ready_dir/$name" ;; esac
  done
}

start() {
  local name=$1
  "$bin/udpchat-$name" > >(prefix "$name") 2>&1 &
  pids+=($!)
  names+=("$name")
  say "$name pid $!"
}

wait_ready() {
  local name=$1 pid=$2 deadline=$((SECONDS + 30))
  until [ -e "$ready_dir/$name" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then say "$name exited during start-up"; stop 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then say "$name was not ready within 30 s"; stop 1; fi
    sleep 0.1
  done
}

stopping=0
stop() {
  [ "$stopping" = 1 ] && return
  stopping=1
  say "stopping"
  # In reverse order: the edge first (it drains into the store), keys last.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[$i]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$ready_dir"
  exit "${1:-0}"
}
trap 'stop 0' INT TERM

start keys;  wait_ready keys "${pids[0]}"
start store; wait_ready store "${pids[1]}"
start ai;    wait_ready ai "${pids[2]}"
start edge;  wait_ready edge "${pids[3]}"
address=$(sed -n 's/.*udp=\([^ ]*\).*/\1/p' "$ready_dir/edge")
# The page relays to the edge just started, wherever it listens.
edge_host=${address%:*}
edge_host=${edge_host#[}
edge_host=${edge_host%]}
case "$edge_host" in 0.0.0.0) edge_host=127.0.0.1 ;; ::) edge_host=::1 ;; esac
export UDP_SERVER_HOST="$edge_host" UDP_SERVER_PORT="${address##*:}"
start web;   wait_ready web "${pids[4]}"
url=$(sed -n 's/.*url=\([^ ]*\).*/\1/p' "$ready_dir/web")
say "all running on udp $address; chat with: $bin/udpchat chat --server $address --email you@example.com"
say "or open the web page: $url"

# Stay in the foreground until a program exits or Ctrl-C.
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then say "${names[$i]} exited"; stop 1; fi
  done
  sleep 1
done
