#!/usr/bin/env bash
# Boots systemd in a throwaway container (systemd-nspawn on an overlay of
# this host's root, so nothing on the host changes), installs udpchat into
# it with deploy/install.sh, and checks what only a real service manager
# shows: every unit of udpchat.target becomes active with its sandbox in
# force (Type=notify), a client can chat through the edge, the private key
# is unreadable to the edge's user, each program's credentials reach only
# the sockets meant for it (an AI worker's not keys.sock), a killed program is restarted, a frozen
# one is restarted by the watchdog, a second AI worker joins, and stopping
# the target stops every program with exit status 0 in order.
#
#   sudo deploy/systemd/boot-check.sh [--bin-dir DIR] [--no-watchdog]
#
# DIR holds the built programs (default .build/debug). Needs root and
# systemd-nspawn (Debian's systemd-container, installed if missing). The
# container shares the host's network: it uses UDP port 19999 and TCP
# ports 19101-19106, 19110 and 18000 on 127.0.0.1. Exits 0 when every check passes.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin_dir=.build/debug
watchdog=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --no-watchdog) watchdog=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "boot-check: unknown option: $1" >&2; exit 2 ;;
  esac
done
bin_dir="$(cd "$bin_dir" && pwd)"

say() { printf '[boot-check] %s\n' "$*"; }
failures=0
check() {  # check NAME COMMAND...: runs COMMAND, reports, counts failures
  local name=$1; shift
  if "$@"; then say "ok: $name"; else say "FAILED: $name"; failures=$((failures + 1)); fi
}

[ "$(id -u)" = 0 ] || { say "run as root"; exit 1; }
if ! command -v systemd-nspawn >/dev/null 2>&1; then
  say "installing systemd-container (systemd-nspawn)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container >/dev/null
fi

work=$(mktemp -d /tmp/udpchat-boot-XXXXXX)
root="$work/root"
nspawn_pid=""
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    [ -n "${init_pid:-}" ] && kill -s SIGRTMIN+4 "$init_pid" 2>/dev/null || true  # systemd: power off
    for _ in $(seq 1 30); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  mountpoint -q "$root" && umount "$root"
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/upper" "$work/scratch" "$root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/scratch" "$root"
# A clean slate for udpchat inside, whatever this host has.
rm -rf "$root/etc/udpchat" "$root/var/lib/udpchat-keys" "$root/var/lib/udpchat-store"
./deploy/install.sh --destdir "$root" --bin-dir "$bin_dir" | sed 's/^/  /'
cat >> "$root/etc/udpchat/udpchat.env" <<'EOF'
# boot-check: ports that do not collide with a running udpchat
SERVER_IP=127.0.0.1
SERVER_PORT=19999
KEYS_METRICS_PORT=19101
STORE_METRICS_PORT=19102
EDGE_METRICS_PORT=19103
UDP_SERVER_PORT=19999
WS_PORT=18000
WEB_METRICS_PORT=19110
EOF
# As an operator would: enable the target (which enables udpchat-ai@9104),
# then trade that worker for one on a port of the check's own.
systemctl --root="$root" enable udpchat.target >/dev/null 2>&1
check "enabling udpchat.target enables udpchat-ai@9104" test -L "$root/etc/systemd/system/udpchat.target.wants/udpchat-ai@9104.service"
systemctl --root="$root" disable udpchat-ai@9104.service >/dev/null 2>&1
systemctl --root="$root" enable udpchat-ai@19104.service >/dev/null 2>&1
systemctl --root="$root" set-default multi-user.target >/dev/null 2>&1
# The tests' Prometheus package enables its own service; it has no place here.
systemctl --root="$root" mask prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true

say "booting systemd in a container"
systemd-nspawn -D "$root" --boot --register=no --keep-unit -M udpchat-boot-check --console=passive \
  > "$work/console.log" 2>&1 &
nspawn_pid=$!
init_pid=""
deadline=$((SECONDS + 60))
while [ -z "$init_pid" ] && [ "$SECONDS" -lt "$deadline" ]; do
  init_pid=$(pgrep -n -f '^/usr/lib/systemd/systemd$|^/lib/systemd/systemd$' || true)
  kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/console.log"; say "the container did not boot"; exit 1; }
  sleep 0.5
done
[ -n "$init_pid" ] || { cat "$work/console.log"; say "no systemd in the container within 60 s"; exit 1; }
inside() { nsenter -t "$init_pid" -a "$@"; }

until inside systemctl is-active --quiet udpchat.target 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.5; done
units=(udpchat-keys.service udpchat-store.service udpchat-edge.service udpchat-web.service udpchat-ai@19104.service)
all_active() { for unit in "${units[@]}"; do inside systemctl is-active --quiet "$unit" || return 1; done; }
check "udpchat.target and its five units are active (Type=notify: each said READY=1)" all_active
inside systemctl --no-pager --lines=0 status "${units[@]}" | grep -E '●|Active:' | sed 's/^/  /' || true

client="$bin_dir/udpchat"
known="$work/known_hosts"
check "a client chats through the edge" \
  "$client" send --server 127.0.0.1:19999 --known-hosts "$known" --email ops@example.com --room Boot --create "hello from systemd"
ready() { "$PWD/deploy/container/healthcheck" "$1" >/dev/null; }  # /readyz answers 200
check "every /readyz answers 200" bash -c "$(declare -f ready); ready 19101 && ready 19102 && ready 19103 && ready 19104 && ready 19110"
check "udpchat-web serves the page" bash -c "curl -s --max-time 5 http://127.0.0.1:18000/ | grep -q '<title>udpchat</title>'"
check "the edge's user cannot read the private key" \
  bash -c "! nsenter -t $init_pid -a setpriv --reuid=udpchat-edge --regid=udpchat --init-groups cat /var/lib/udpchat-keys/server_private_key.pem >/dev/null 2>&1"
# Who reaches which socket, with each program's own credentials (user,
# group and supplementary groups read from its running process).
as_program() {  # as_program UNIT COMMAND...: COMMAND inside, as UNIT's main process
  local unit=$1; shift
  local pid uid gid groups
  pid=$(inside systemctl show -p MainPID --value "$unit")
  uid=$(inside awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
  gid=$(inside awk '/^Gid:/ { print $2 }' "/proc/$pid/status")
  groups=$(inside awk '/^Groups:/ { $1 = ""; print }' "/proc/$pid/status" | xargs | tr ' ' ',')
  if [ -n "$groups" ]; then
    inside setpriv --reuid="$uid" --regid="$gid" --groups="$groups" "$@"
  else
    inside setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"
  fi
}
connects() {  # connects UNIT SOCKET: UNIT's credentials can connect to SOCKET
  as_program "$1" /usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$2" 2>&1 | tail -1 | sed 's/^/  /'; [ "${PIPESTATUS[0]}" = 0 ]
}
cannot() { ! "$@"; }
ai=udpchat-ai@19104.service
check "the edge connects to keys.sock" connects udpchat-edge.service /run/udpchat-keys/keys.sock
check "the edge connects to store.sock and events.sock" \
  bash -c "$(declare -f inside as_program connects); init_pid=$init_pid; connects udpchat-edge.service /run/udpchat-store/store.sock && connects udpchat-edge.service /run/udpchat-store/events.sock"
check "an AI worker connects to jobs.sock" connects "$ai" /run/udpchat-jobs/jobs.sock
check "an AI worker cannot connect to keys.sock" cannot connects "$ai" /run/udpchat-keys/keys.sock
check "an AI worker cannot connect to store.sock or events.sock" \
  bash -c "$(declare -f inside as_program connects); init_pid=$init_pid; ! connects $ai /run/udpchat-store/store.sock && ! connects $ai /run/udpchat-store/events.sock"
check "the edge cannot connect to jobs.sock" cannot connects udpchat-edge.service /run/udpchat-jobs/jobs.sock
check "the edge's sandbox is in force (NoNewPrivs, seccomp)" \
  bash -c "pid=\$(nsenter -t $init_pid -a systemctl show -p MainPID --value udpchat-edge); nsenter -t $init_pid -a grep -q 'NoNewPrivs:.*1' /proc/\$pid/status && nsenter -t $init_pid -a grep -q 'Seccomp:.*2' /proc/\$pid/status"
inside systemd-analyze security --no-pager "${units[@]}" 2>/dev/null | grep 'Overall exposure' | sed 's/^/  /' || true
# CPUWeight= is read as written; it takes effect where the cpu controller
# (cgroup v2) reaches the container's systemd.
check "udpchat-keys' CPUWeight= is 20 as systemd reads it" \
  test "$(inside systemctl show -p CPUWeight --value udpchat-keys.service)" = 20
keys_weight=$(inside cat /sys/fs/cgroup/system.slice/udpchat-keys.service/cpu.weight 2>/dev/null || true)
if [ -n "$keys_weight" ]; then
  check "udpchat-keys yields the cores (cpu.weight 20 against the edge's $(inside cat /sys/fs/cgroup/system.slice/udpchat-edge.service/cpu.weight 2>/dev/null))" \
    test "$keys_weight" = 20
else
  say "note: no cpu controller in this container, so CPUWeight= is not in force here"
fi

restarted() {  # restarted UNIT BEFORE: NRestarts grew and the unit is active again
  local unit=$1 before=$2 end=$((SECONDS + ${3:-20}))
  while [ "$SECONDS" -lt "$end" ]; do
    if [ "$(inside systemctl show -p NRestarts --value "$unit")" -gt "$before" ] && inside systemctl is-active --quiet "$unit"; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}
before=$(inside systemctl show -p NRestarts --value udpchat-edge.service)
inside systemctl kill -s KILL udpchat-edge.service
check "a killed edge is restarted (Restart=on-failure)" restarted udpchat-edge.service "$before"
check "after the restart a client chats again" \
  "$client" send --server 127.0.0.1:19999 --known-hosts "$known" --email ops@example.com --room Boot "after a crash"

if [ "$watchdog" = 1 ]; then
  before=$(inside systemctl show -p NRestarts --value udpchat-store.service)
  inside systemctl kill -s STOP udpchat-store.service
  say "froze udpchat-store; waiting for its 30 s watchdog"
  check "a frozen store is restarted by the watchdog" restarted udpchat-store.service "$before" 50
  check "the journal says why" bash -c "nsenter -t $init_pid -a journalctl -u udpchat-store --no-pager | grep -q 'Watchdog timeout'"
  check "messages survive it" bash -c "'$client' history --server 127.0.0.1:19999 --known-hosts '$known' --email ops@example.com --room Boot | grep -q 'after a crash'"
fi

inside systemctl start udpchat-ai@19105.service
check "a second AI worker joins (udpchat-ai@19105)" bash -c "$(declare -f ready); for _ in \$(seq 1 20); do ready 19105 && exit 0; sleep 0.5; done; exit 1"

inside systemctl stop udpchat.target udpchat-ai@19105.service
stopped_cleanly() {
  local unit end=$((SECONDS + 60))
  for unit in "${units[@]}" udpchat-ai@19105.service; do
    while inside systemctl is-active --quiet "$unit" || [ "$(inside systemctl show -p ActiveState --value "$unit")" = deactivating ]; do
      [ "$SECONDS" -lt "$end" ] || return 1
      sleep 0.2
    done
    local result status
    result=$(inside systemctl show -p Result --value "$unit")
    status=$(inside systemctl show -p ExecMainStatus --value "$unit")
    say "  $unit: result $result, exit status $status"
    [ "$result" = success ] && [ "$status" = 0 ] || return 1
  done
}
check "stopping the target stops every program with exit status 0" stopped_cleanly
order=$(inside journalctl --no-pager -o cat _PID=1 | grep -E '^Stopped udpchat-(edge|store)' | tail -2 | tr '\n' ' ')
check "the edge stops before the store" bash -c "[[ '$order' == 'Stopped udpchat-edge'*'Stopped udpchat-store'* ]]"

if [ "$failures" -gt 0 ]; then
  say "$failures check(s) failed; the journal:"
  inside journalctl --no-pager -u 'udpchat*' | tail -60
  exit 1
fi
say "all checks passed"
