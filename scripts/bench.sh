#!/usr/bin/env bash
# Runs `udpchat bench` against udpchat (release build) and, with --original,
# against the original Python server in the same run, and prints each run's
# table and JSON line. docs/performance.md has what it measured.
#
#   scripts/bench.sh [--original|--only-original] [--quick] [--bin-dir DIR]
#                    [--bench BIN] [--label NAME] [--out FILE]
#
#   --bin-dir DIR  the server programs to measure (default: a release build here)
#   --bench BIN    the udpchat binary that runs the bench (default: DIR/udpchat);
#                  with --bin-dir, measures an older build with today's bench
#   --label NAME   the label of the udpchat runs (default: udpchat)
#   --only-original  run only the original's part
#   --original   also start the original server (scripts/original-server.sh;
#                its source: ORIGINAL_SOURCE, see that script) and run the same
#                fan-out runs against it, once with its database on disk and
#                once in /dev/shm
#   --quick      shorter runs (a few seconds each), to check the script
#   --bin-dir    use the programs in DIR instead of building .build/release
#   --out FILE   also append every JSON line to FILE
#
# Our programs run from a temporary directory with the settings a bench on
# one machine needs: RATE_LIMIT_EXEMPT=127.0.0.1 (every client comes from
# one address). The per-user message rate is left at its default for the
# closed-loop run (what a user meets) and raised for the saturation runs
# (those measure the delivery path, not the limit). Everything started is
# stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

original=0
only_original=0
quick=0
bin_dir=""
bench=""
label=udpchat
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --original) original=1; shift ;;
    --only-original) original=1; only_original=1; shift ;;
    --quick) quick=1; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --bench) bench="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done

if [ -z "$bin_dir" ]; then
  ./scripts/bootstrap.sh
  swift build -c release >&2
  bin_dir=.build/release
fi
[ -n "$bench" ] || bench="$bin_dir/udpchat"
seconds=10; drain=30; settle=75; sessions=10000
if [ "$quick" = 1 ]; then seconds=3; drain=10; settle=5; sessions=500; fi

work=$(mktemp -d /tmp/udpchat-bench-XXXXXX)
# shellcheck source=lib/bench-common.sh
. ./scripts/lib/bench-common.sh
trap 'stop_all; rm -rf "$work"' EXIT

# Starts keys, store and edge on UDP $1 with extra settings in "$@"; waits for their ready lines.
start_udpchat() {
  local port="$1"; shift
  stop_all
  rm -rf "$work/data"
  export DATA_DIR="$work/data" SERVER_PORT="$port" KEYS_METRICS_PORT=0 STORE_METRICS_PORT=0 EDGE_METRICS_PORT=0 \
    RATE_LIMIT_EXEMPT=127.0.0.1 LOG_LEVEL=warning UDPCHAT_ENV_FILE=/dev/null
  for setting in "$@"; do export "${setting?}"; done
  "$bin_dir/udpchat-keys" generate >/dev/null
  "$bin_dir/udpchat-keys" >"$work/keys.log" 2>&1 & pids+=($!)
  "$bin_dir/udpchat-store" >"$work/store.log" 2>&1 & pids+=($!)
  wait_for_line "$work/keys.log" "udpchat-keys ready"
  wait_for_line "$work/store.log" "udpchat-store ready"
  "$bin_dir/udpchat-edge" >"$work/edge.log" 2>&1 & pids+=($!)
  wait_for_line "$work/edge.log" "udpchat-edge ready"
  for setting in "$@"; do unset "${setting%%=*}"; done
}


fanout() { "$bench" bench fanout --duration "$seconds" --drain "$drain" "$@"; }
# Closed-loop runs measure after two seconds: the per-user limit's burst at the start is not the steady state.
closed() { fanout --warmup 2 "$@"; }

# --- udpchat -----------------------------------------------------------------
if [ "$only_original" = 0 ]; then
say "udpchat: 50 clients in 5 rooms, closed loop, default settings (MESSAGES_PER_USER=20)"
start_udpchat 19991
record closed --server 127.0.0.1:19991 --clients 50 --rooms 5 --label "$label"

say "udpchat: 50 clients in 5 rooms, closed loop, no per-user limit"
start_udpchat 19991 MESSAGES_PER_USER=1000000
record closed --server 127.0.0.1:19991 --clients 50 --rooms 5 --label "$label-unlimited"

say "udpchat: saturation, 100 clients in one room, fixed rates"
start_udpchat 19991 MESSAGES_PER_USER=1000000
for rate in 200 250 300 350 400 450; do
  record fanout --server 127.0.0.1:19991 --clients 100 --rooms 1 --rate "$rate" --label "$label"
done

say "udpchat: saturation, 50 clients in 5 rooms, fixed rates"
start_udpchat 19991 MESSAGES_PER_USER=1000000
for rate in 1000 2000 2500; do
  record fanout --server 127.0.0.1:19991 --clients 50 --rooms 5 --rate "$rate" --label "$label"
done

say "udpchat-web: 50 clients in 5 rooms, fixed rates, straight to the edge and through the bridge in turn"
start_udpchat 19991 MESSAGES_PER_USER=1000000
WS_PORT=18991 UDP_SERVER_PORT=19991 WEB_METRICS_PORT=0 WEB_MESSAGES_PER_SECOND=1000000 \
  "$bin_dir/udpchat-web" >"$work/web.log" 2>&1 & pids+=($!)
wait_for_line "$work/web.log" "udpchat-web ready"
for rate in 500 1000 1500; do
  record fanout --server 127.0.0.1:19991 --clients 50 --rooms 5 --rate "$rate" --watch udpchat-edge,udpchat-store,udpchat-web --label "$label-direct"
  record fanout --web ws://127.0.0.1:18991/ws --clients 50 --rooms 5 --rate "$rate" --watch udpchat-edge,udpchat-store,udpchat-web --label "$label-web"
done

say "udpchat: saturation, 200 clients in 4 rooms of 50, fixed rates"
start_udpchat 19991 MESSAGES_PER_USER=1000000
for rate in 600 800 1000; do
  record fanout --server 127.0.0.1:19991 --clients 200 --rooms 4 --rate "$rate" --label "$label"
done

say "udpchat: handshakes"
start_udpchat 19991
record "$bench" bench handshakes --server 127.0.0.1:19991 --duration "$seconds" --label "$label"

say "udpchat: $sessions idle sessions in 50 rooms"
start_udpchat 19991
record "$bench" bench idle --server 127.0.0.1:19991 --sessions "$sessions" --rooms 50 --settle "$settle" --label "$label"
stop_all
fi

# --- the original ---------------------------------------------------------------
if [ "$original" = 1 ]; then
  for where in disk shm; do
    args=(--port 19992 --fresh-db)
    [ "$where" = shm ] && args+=(--db-dir /dev/shm/udpchat-original-bench)
    ./scripts/original-server.sh "${args[@]}" >"$work/original.log" 2>&1 & pids+=($!)
    wait_for_line "$work/original.log" "original-server ready"
    pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' "$work/original.log" | head -1)
    say "original ($where): 50 clients in 5 rooms, closed loop"
    # No retries: the original refuses a repeated datagram ("This nonce was already used").
    # It sends no MESSAGE_SENT; a sender's own copy confirms, and when that never
    # comes (it sometimes does not) the sender moves on after 3 s.
    record closed --server 127.0.0.1:19992 --clients 50 --rooms 5 --pid "original=$pid" --watch none --label "original-$where" --timeout 30 --message-timeout 3 --retry-interval 0
    say "original ($where): 100 clients in one room at 30 messages/s"
    record fanout --server 127.0.0.1:19992 --clients 100 --rooms 1 --rate 30 --pid "original=$pid" --watch none --label "original-$where" --timeout 30 --message-timeout 3 --retry-interval 0
    if [ "$where" = disk ]; then
      say "original: handshakes"
      record "$bench" bench handshakes --server 127.0.0.1:19992 --duration "$seconds" --pid "original=$pid" --watch none --label original --retry-interval 0
    fi
    stop_all
  done
  rm -rf /dev/shm/udpchat-original-bench
fi
