# Sourced by the bench scripts: the programs they start go in `pids` and
# are stopped by `stop_all`; `record` runs a bench, prints its output and
# appends its JSON line to $out when set.

pids=()
stop_all() {
  for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
  pids=()
}

say() { printf '\n=== %s\n' "$*"; }

# A run that fails (a server that stopped answering) is reported and the next one goes on.
record() {
  local output
  if output=$("$@" 2>&1); then
    printf '%s\n' "$output"
    if [ -n "${out:-}" ]; then printf '%s\n' "$output" | grep '^{' >> "$out"; fi
  else
    printf '%s\n(this run failed)\n' "$output"
  fi
}

# Waits (at most 30 s) for a line containing $2 in the log $1.
wait_for_line() {
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no '$2' in $1:" >&2; cat "$1" >&2; exit 1
}
