#!/usr/bin/env bash
# Runs the ORIGINAL Python UDPChat-AI server (github.com/agonych/udp_chat,
# server/ at revision 4ef9cd9, the SQLite-era server that docs/protocol.md
# calls [R1]) on 127.0.0.1:PORT, for side-by-side benchmarks and wire checks.
#
#   scripts/original-server.sh [--port PORT] [--dir DIR] [--host HOST]
#                              [--debug] [--fresh-db] [--db-dir PATH] [--key PEM]
#                              [--setup-only]
#
#   --port PORT   UDP port (default 9998)
#   --dir DIR     working directory for sources, venv and state
#                 (default <repo>/.build-original, which is git-ignored)
#   --host HOST   bind address (default 127.0.0.1)
#   --debug       start the server with DEBUG=True (very chatty, slower)
#   --fresh-db    delete the SQLite database before starting
#   --db-dir PATH keep the SQLite database in PATH instead of
#                 DIR/src/server/storage/db (that directory becomes a symlink),
#                 e.g. /dev/shm/udpchat-original: the original commits to
#                 SQLite 2-3 times per datagram, so on a real disk its speed is
#                 bound by fsync latency; without --db-dir the symlink is undone
#   --key PEM     install this RSA private key (PEM, unencrypted) as the
#                 server's identity key (e.g. the key our server uses, so both
#                 have the same fingerprint); it stays in DIR for later runs.
#                 Without it, an RSA-2048 key is generated on first setup.
#   --setup-only  prepare everything, print the paths, do not start
#
# Everything lives under DIR:
#   DIR/src/server/                  the original server/ directory (4ef9cd9)
#   DIR/src/server/.env              written by this script (no AI, no secrets)
#   DIR/src/server/storage/keys/     server_private_key.pem, server_public_key.pem
#   DIR/src/server/storage/db/       chat.db (SQLite)
#   DIR/venv/                        Python venv with server/requirements.txt
# (the original hard-codes storage/ next to its own code; there is no
# environment variable for the database or key paths).
#
# Getting the source. In order of preference:
#   1. DIR/src/server already extracted (marker file .udpchat-original-rev):
#      reused as is.
#   2. ORIGINAL_SOURCE=<path>: on machines without GitHub access a copy can be
#      seeded from a local mirror. <path> may be
#        - an already-extracted server/ directory (contains main.py), copied, or
#        - a git directory (bare mirror such as /work/.mirror/agonych+udp_chat/repo,
#          or a work tree), from which server/ at 4ef9cd9 is `git archive`d.
#   3. otherwise `git clone https://github.com/agonych/udp_chat DIR/src` and
#      check out 4ef9cd9 (ORIGINAL_REPO_URL overrides the URL).
# ORIGINAL_REV overrides the revision (default 4ef9cd9); PYTHON the interpreter
# used to create the venv (default python3).
#
# Once the server listens (checked with `ss -ulnp` against its PID, then with a
# stateless probe datagram answered by SERVER_ERROR), one line is printed:
#   original-server ready udp=HOST:PORT pid=PID
# The server then runs in the foreground (this script execs it, so PID is this
# script's PID); SIGTERM/SIGINT stop it within ~2 s, and the script's exit
# status is the server's.
set -euo pipefail

say() { printf '[original-server] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port=9998
host=127.0.0.1
dir="$repo_root/.build-original"
debug=False
fresh_db=0
db_dir=""
key_file=""
setup_only=0
rev="${ORIGINAL_REV:-4ef9cd9}"
upstream="${ORIGINAL_REPO_URL:-https://github.com/agonych/udp_chat}"
python="${PYTHON:-python3}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --port) [ $# -ge 2 ] || die "--port needs a value"; port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir="$2"; shift 2 ;;
    --dir=*) dir="${1#*=}"; shift ;;
    --host) [ $# -ge 2 ] || die "--host needs a value"; host="$2"; shift 2 ;;
    --host=*) host="${1#*=}"; shift ;;
    --key) [ $# -ge 2 ] || die "--key needs a value"; key_file="$2"; shift 2 ;;
    --key=*) key_file="${1#*=}"; shift ;;
    --debug) debug=True; shift ;;
    --fresh-db) fresh_db=1; shift ;;
    --db-dir) [ $# -ge 2 ] || die "--db-dir needs a value"; db_dir="$2"; shift 2 ;;
    --db-dir=*) db_dir="${1#*=}"; shift ;;
    --setup-only) setup_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
done
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port: $port"
[ -z "$key_file" ] || [ -f "$key_file" ] || die "no such key file: $key_file"
[ -z "$key_file" ] || key_file="$(cd "$(dirname "$key_file")" && pwd)/$(basename "$key_file")"

# Checked first so that a second invocation does not touch a running
# instance's state (.env, database).
if [ "$setup_only" = 0 ] && command -v ss >/dev/null 2>&1 \
   && [ -n "$(ss -Hulnp "sport = :$port" 2>/dev/null)" ]; then
  die "UDP port $port is already in use: $(ss -Hulnp "sport = :$port" | tr -s ' ')"
fi

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
src="$dir/src"
server="$src/server"
venv="$dir/venv"
marker="$server/.udpchat-original-rev"

# --- 1. source --------------------------------------------------------------

# extract_from_git GIT_COMMAND...: extract server/ at $rev from that repository.
extract_from_git() {
  local tmp="$src.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  "$@" rev-parse --verify --quiet "$rev^{commit}" >/dev/null \
    || { rm -rf "$tmp"; die "revision $rev not found in $*"; }
  "$@" archive "$rev" server | tar -x -C "$tmp"
  rm -rf "$src"; mv "$tmp" "$src"
}

# (Re-)extracting replaces DIR/src; the state in server/storage (identity key,
# database) is kept across that.
keep="$dir/storage.keep"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$rev" ] && [ -f "$server/main.py" ]; then
  :
else
  if [ -d "$server/storage" ]; then rm -rf "$keep"; mv "$server/storage" "$keep"; fi
fi
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$rev" ] && [ -f "$server/main.py" ]; then
  :
elif [ -n "${ORIGINAL_SOURCE:-}" ]; then
  [ -e "$ORIGINAL_SOURCE" ] || die "ORIGINAL_SOURCE does not exist: $ORIGINAL_SOURCE"
  if [ -f "$ORIGINAL_SOURCE/main.py" ] && [ -f "$ORIGINAL_SOURCE/server.py" ]; then
    say "copying extracted server/ from $ORIGINAL_SOURCE (revision assumed to be $rev)"
    rm -rf "$src"; mkdir -p "$src"
    cp -a "$ORIGINAL_SOURCE" "$server"
    rm -rf "$server/storage" "$server/.env"   # start from clean state
  elif git --git-dir="$ORIGINAL_SOURCE" rev-parse --git-dir >/dev/null 2>&1; then
    say "extracting server/ at $rev from git dir $ORIGINAL_SOURCE"
    extract_from_git git --git-dir="$ORIGINAL_SOURCE"
  elif git -C "$ORIGINAL_SOURCE" rev-parse --git-dir >/dev/null 2>&1; then
    say "extracting server/ at $rev from work tree $ORIGINAL_SOURCE"
    extract_from_git git -C "$ORIGINAL_SOURCE"
  else
    die "ORIGINAL_SOURCE is neither a server/ directory nor a git repository: $ORIGINAL_SOURCE"
  fi
  printf '%s\n' "$rev" >"$marker"
else
  command -v git >/dev/null 2>&1 || die "git is needed to clone $upstream"
  say "cloning $upstream into $src and checking out $rev"
  rm -rf "$src"
  git clone --quiet "$upstream" "$src" \
    || die "git clone $upstream failed (no access to GitHub? seed a local copy with ORIGINAL_SOURCE=<git dir or server/ dir>)"
  git -C "$src" -c advice.detachedHead=false checkout --quiet "$rev"
  printf '%s\n' "$rev" >"$marker"
fi
[ -f "$server/main.py" ] && [ -f "$server/requirements.txt" ] && [ -f "$server/db/schema.sql" ] \
  || die "$server does not look like the original server/ directory"
if [ -d "$keep" ]; then rm -rf "$server/storage"; mv "$keep" "$server/storage"; fi

# --- 2. venv + requirements ---------------------------------------------------

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install $*"
    sudo="sudo"
  fi
  say "apt-get install $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  command -v "$python" >/dev/null 2>&1 || die "$python not found (set PYTHON=...)"
  say "creating venv $venv"
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Debian splits venv/ensurepip out of python3 into python3-venv.
    rm -rf "$venv"
    command -v apt-get >/dev/null 2>&1 || die "'$python -m venv' failed and apt-get is not available"
    pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    apt_install python3-venv "python$pyver-venv" || apt_install python3-venv
    "$python" -m venv "$venv" || die "'$python -m venv' still fails"
  fi
fi

req_sum="$(sha256sum "$server/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" != "$req_sum" ]; then
  say "pip install -r server/requirements.txt (cryptography, python-dotenv, openai, ollama)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$server/requirements.txt"
  printf '%s\n' "$req_sum" >"$venv/.requirements.sha256"
fi

# --- 3. configuration, keys, database -------------------------------------------

# config.py calls load_dotenv(), which searches upwards from server/ and would
# otherwise pick up any .env in a parent directory. The real values come from
# the environment below (load_dotenv never overrides existing variables).
# AI_MODE=off: AI_MESSAGE answers ERROR "Invalid AI mode configured." instead
# of calling OpenAI/Ollama, so nothing goes to the network.
cat >"$server/.env" <<EOF
SERVER_IP=$host
SERVER_PORT=$port
BUFFER_SIZE=8192
DEBUG=$debug
AI_MODE=off
EOF
export SERVER_IP="$host" SERVER_PORT="$port" BUFFER_SIZE=8192 DEBUG="$debug" AI_MODE=off
unset OPENAI_API_KEY
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

mkdir -p "$server/storage/keys"
# storage/db is either a real directory (default) or, with --db-dir, a
# symlink to another place; the on-disk directory is parked as db.disk.
if [ -n "$db_dir" ]; then
  mkdir -p "$db_dir"
  db_dir="$(cd "$db_dir" && pwd)"
  if [ -d "$server/storage/db" ] && [ ! -L "$server/storage/db" ]; then
    rm -rf "$server/storage/db.disk"
    mv "$server/storage/db" "$server/storage/db.disk"
  fi
  ln -sfn "$db_dir" "$server/storage/db"
elif [ -L "$server/storage/db" ]; then
  rm -f "$server/storage/db"
  if [ -d "$server/storage/db.disk" ]; then mv "$server/storage/db.disk" "$server/storage/db"; fi
fi
mkdir -p "$server/storage/db"
if [ -n "$key_file" ]; then
  "$venv/bin/python" - "$key_file" "$server/storage/keys" <<'EOF'
import sys
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
out = sys.argv[2]
open(out + "/server_private_key.pem", "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
open(out + "/server_public_key.pem", "wb").write(key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
EOF
fi
# The server would create an RSA-2048 pair on first start anyway; doing it here
# with its own function keeps start-up fast and shows the fingerprint.
fingerprint="$(cd "$src" && "$venv/bin/python" -c '
from server.utils.encryption import load_or_create_server_keys
print(load_or_create_server_keys()[2])' | tail -n 1)"
chmod 600 "$server/storage/keys/server_private_key.pem"

[ "$fresh_db" = 1 ] && rm -f "$server/storage/db/chat.db"
# main.py init_db opens db/schema.sql relative to the working directory; the
# schema is all CREATE ... IF NOT EXISTS, so running it every time is harmless.
(cd "$server" && "$venv/bin/python" main.py init_db >/dev/null)

say "source   $server (revision $rev)"
say "venv     $venv"
say "database $server/storage/db/chat.db${db_dir:+ -> $db_dir/chat.db}"
say "key      $server/storage/keys/server_private_key.pem (fingerprint $fingerprint)"
if [ "$setup_only" = 1 ]; then
  exit 0
fi

# --- 4. run -------------------------------------------------------------------

server_pid=$$
probe_host="$host"
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
# Watcher: waits until process $server_pid (the server, after exec below)
# owns a UDP socket on the port and answers a probe, then prints the ready
# line. Gives up (and stops the server) after 60 s. Double-forked so that it
# is not left as a zombie child of the server process.
( (
  deadline=$((SECONDS + 60))
  while :; do
    kill -0 "$server_pid" 2>/dev/null || exit 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "server did not become ready within 60 s; stopping pid $server_pid"
      kill -TERM "$server_pid" 2>/dev/null || true
      exit 1
    fi
    # With ss: a socket on the port must exist and, when ss can tell whose
    # it is, belong to the server's PID.
    listening=1
    if command -v ss >/dev/null 2>&1; then
      sockets="$(ss -Hulnp "sport = :$port" 2>/dev/null || true)"
      if [ -z "$sockets" ]; then
        listening=0
      elif [[ "$sockets" == *pid=* && "$sockets" != *"pid=$server_pid,"* ]]; then
        listening=0
      fi
    fi
    # {"type":"PING"} is answered with a plaintext SERVER_ERROR
    # "Unknown message type 'PING'" and creates no state.
    if [ "$listening" = 1 ] && "$venv/bin/python" - "$probe_host" "$port" <<'EOF' 2>/dev/null
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b'{"type":"PING"}')
reply = json.loads(s.recv(65535))
sys.exit(0 if reply.get("type") == "SERVER_ERROR" else 1)
EOF
    then
      printf 'original-server ready udp=%s:%s pid=%s\n' "$host" "$port" "$server_pid"
      exit 0
    fi
    sleep 0.2
  done
) & )

cd "$server"
exec "$venv/bin/python" main.py start "$host" "$port"
