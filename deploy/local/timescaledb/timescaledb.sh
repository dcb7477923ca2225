#!/usr/bin/env bash
# Local TimescaleDB (PostgreSQL 17 + Debian trixie's postgresql-17-timescaledb,
# the Apache-licensed edition) for development and tests. Debian bookworm has
# no TimescaleDB package, so the server runs from a minimal Debian trixie root
# file system: built once with debootstrap, kept as a slim tarball in the
# cache and restored from it in seconds. Listens on 127.0.0.1 only.
#
# Each server runs chrooted in a private mount namespace of its own: the data
# dir is bind-mounted at /srv/tradingbot inside it, with a tmpfs on /dev/shm
# and /proc. Nothing is mounted in the host's namespace, and the kernel
# drops those mounts when the server's last process exits, so even a server
# killed with SIGKILL leaves no mount behind. Needs root (chroot, mount).
#
# Usage: timescaledb.sh fetch|start|stop|status|reset|url|psql [ARGS...]
#   fetch   build or restore the root file system (done once; later calls return at once)
#   start   fetch if needed, initdb if the data dir is new, start, wait until it answers
#   stop    fast shutdown (SIGINT), SIGQUIT then SIGKILL after TIMESCALEDB_STOP_TIMEOUT
#   status  "running (pid ..., edition ...)" exit 0 / "not running" exit 1
#   reset   stop and delete the data dir
#   url     print the connection URL of the server on TIMESCALEDB_PORT
#   psql    run the server's psql as TIMESCALEDB_USER on TIMESCALEDB_DB (extra ARGS passed on)
#
# Environment:
#   TIMESCALEDB_PORT           TCP port on 127.0.0.1                       [5433]
#   TIMESCALEDB_DATA_DIR       data dir (pgdata/, server.log, tradingbot.conf) [<cache>/timescaledb/data-$TIMESCALEDB_PORT]
#   TIMESCALEDB_USER           role created on a new data dir (superuser)  [tradingbot]
#   TIMESCALEDB_PASSWORD       its password                                [tradingbot]
#   TIMESCALEDB_DB             database created on a new data dir          [tradingbot]
#   TIMESCALEDB_SHARED_BUFFERS shared_buffers                              [256MB]
#   TIMESCALEDB_FRESH=1        start: stop the server and wipe the data dir first
#   TIMESCALEDB_START_TIMEOUT  start: seconds to wait for readiness        [60]
#   TIMESCALEDB_STOP_TIMEOUT   stop: seconds before SIGQUIT/SIGKILL        [30]
#   TIMESCALEDB_MIRROR         Debian mirror for debootstrap               [http://deb.debian.org/debian]
#   TRADINGBOT_CACHE           cache root                                  [<repo>/.cache]
set -euo pipefail
shopt -s inherit_errexit

readonly SUITE=trixie
readonly PG_MAJOR=17
readonly PACKAGES="postgresql-$PG_MAJOR postgresql-$PG_MAJOR-timescaledb"
readonly RECIPE=2 # bump when the way the root file system is built changes
readonly PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
readonly MOUNT_POINT=/srv/tradingbot # the data dir, inside the chroot
readonly PGDATA_IN="$MOUNT_POINT/pgdata"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../../.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT

CACHE_ROOT="$(realpath -m -- "${TRADINGBOT_CACHE:-$REPO_ROOT/.cache}")"
readonly CACHE_ROOT
readonly BASE="$CACHE_ROOT/timescaledb"
readonly ROOTFS="$BASE/rootfs-$SUITE-pg$PG_MAJOR"
readonly ROOTFS_STAMP="$ROOTFS/.tradingbot-rootfs"
readonly RUN_DIR="$BASE/run"
MIRROR="${TIMESCALEDB_MIRROR:-http://deb.debian.org/debian}"

PORT="${TIMESCALEDB_PORT:-5433}"
DB_USER="${TIMESCALEDB_USER:-tradingbot}"
DB_PASSWORD="${TIMESCALEDB_PASSWORD:-tradingbot}"
DB_NAME="${TIMESCALEDB_DB:-tradingbot}"
SHARED_BUFFERS="${TIMESCALEDB_SHARED_BUFFERS:-256MB}"
START_TIMEOUT="${TIMESCALEDB_START_TIMEOUT:-60}"
STOP_TIMEOUT="${TIMESCALEDB_STOP_TIMEOUT:-30}"

log() { printf 'timescaledb.sh: %s\n' "$*" >&2; }
die() { printf 'timescaledb.sh: error: %s\n' "$*" >&2; exit 1; }

is_port() { [[ "$1" =~ ^[1-9][0-9]*$ ]] && (( $1 >= 1 && $1 <= 65535 )); }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_name() { [[ "$1" =~ ^[a-z_][a-z0-9_]*$ ]]; }

validate_env() {
  is_port "$PORT" || die "TIMESCALEDB_PORT='$PORT' is not a port number"
  is_uint "$START_TIMEOUT" || die "TIMESCALEDB_START_TIMEOUT must be a number of seconds"
  is_uint "$STOP_TIMEOUT" || die "TIMESCALEDB_STOP_TIMEOUT must be a number of seconds"
  is_name "$DB_USER" || die "TIMESCALEDB_USER='$DB_USER' must be a lower-case SQL name"
  is_name "$DB_NAME" || die "TIMESCALEDB_DB='$DB_NAME' must be a lower-case SQL name"
  [[ "$DB_PASSWORD" != *"'"* ]] || die "TIMESCALEDB_PASSWORD must not contain a single quote"
  DATA_DIR="$(realpath -m -- "${TIMESCALEDB_DATA_DIR:-$BASE/data-$PORT}")"
  PID_FILE="$RUN_DIR/pg-$PORT.pid"
  MOUNTS_FILE="$RUN_DIR/pg-$PORT.mounts"
  LOCK_FILE="$RUN_DIR/pg-$PORT.lock"
  SERVER_LOG="$DATA_DIR/server.log"
}

require_root() {
  (( EUID == 0 )) || die "$1 needs root (debootstrap, chroot and mount); run it as root, e.g. sudo $0 $1"
  command -v unshare >/dev/null 2>&1 || die "unshare not found; install util-linux"
  command -v nsenter >/dev/null 2>&1 || die "nsenter not found; install util-linux"
}

# ---------------------------------------------------------------- fetch

fingerprint() { printf 'suite=%s packages=%s recipe=%s\n' "$SUITE" "$PACKAGES" "$RECIPE" | sha256sum | cut -c1-16; }

tarball() {
  if command -v zstd >/dev/null 2>&1; then
    printf '%s\n' "$BASE/$SUITE-pg$PG_MAJOR-timescaledb-$(fingerprint).tar.zst"
  else
    printf '%s\n' "$BASE/$SUITE-pg$PG_MAJOR-timescaledb-$(fingerprint).tar.gz"
  fi
}

tar_codec() { if [[ "$1" == *.zst ]]; then printf 'zstd -T0 -3'; else printf 'gzip'; fi; }

fetched() { [[ -f "$ROOTFS_STAMP" && "$(cat "$ROOTFS_STAMP")" == "$(fingerprint)" && -x "$ROOTFS$PG_BIN/postgres" ]]; }

# The device nodes a server needs, made in the chroot's /dev (nothing of the host's /dev is mounted).
make_devices() {
  local root="$1" spec name major minor
  mkdir -p "$root/dev" "$root/dev/shm" "$root/dev/pts"
  for spec in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<<"$spec"
    [[ -c "$root/dev/$name" ]] && continue
    rm -f -- "$root/dev/$name"
    mknod -m 666 "$root/dev/$name" c "$major" "$minor"
  done
  ln -sfn /proc/self/fd "$root/dev/fd"
}

# build_rootfs DIR: debootstrap Debian trixie into DIR and install PostgreSQL and TimescaleDB.
build_rootfs() {
  local dir="$1" build_log="$BASE/fetch.log"
  : >"$build_log"
  if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "debootstrap not found and there is no apt-get; install debootstrap"
    log "installing debootstrap from apt ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >>"$build_log" 2>&1 ||
      die "'apt-get install -y debootstrap' failed (see $build_log; run 'apt-get update' first if it was not found)"
  fi
  [[ -e "/usr/share/debootstrap/scripts/$SUITE" ]] ||
    die "this debootstrap does not know Debian $SUITE; upgrade it: apt-get install -y debootstrap"
  log "debootstrap --variant=minbase $SUITE from $MIRROR (about 30 s; log $build_log) ..."
  # In a private mount namespace: the /proc and /sys debootstrap mounts (and
  # the /proc that apt needs below) vanish with it, whatever happens.
  if ! unshare --mount --propagation private -- debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >>"$build_log" 2>&1; then
    tail -n 25 "$build_log" >&2
    if grep -qiE 'Failed getting release file|Temporary failure resolving|Could not resolve|Connection refused|unable to connect|Network is unreachable' "$build_log"; then
      die "debootstrap cannot reach the Debian archive at $MIRROR (set TIMESCALEDB_MIRROR to a reachable mirror)"
    fi
    die "debootstrap failed (see $build_log)"
  fi
  make_devices "$dir"
  # Packages must not start services, and postgresql-common must not create a cluster.
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"
  mkdir -p "$dir/etc/postgresql-common/createcluster.d"
  printf 'create_main_cluster = false\n' >"$dir/etc/postgresql-common/createcluster.d/tradingbot.conf"
  log "installing $PACKAGES in the chroot (about 15 s) ..."
  if ! unshare --mount --propagation private -- /bin/sh -c '
      set -e
      mount -t proc proc "$1/proc"
      exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        /bin/sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $2"' \
      sh "$dir" "$PACKAGES" >>"$build_log" 2>&1; then
    tail -n 25 "$build_log" >&2
    die "installing $PACKAGES in the $SUITE chroot failed (see $build_log)"
  fi
  chroot "$dir" dpkg-query -W -f '${Package} ${Version}\n' $PACKAGES timescaledb-tools 2>/dev/null \
    >"$dir/etc/tradingbot-timescaledb.versions" || true
  # Slim: what a server never reads (apt lists and archives, docs, manuals,
  # translations, locale sources) and the LLVM JIT provider with the ~150 MB
  # it links (only llvmjit.so uses libLLVM and libz3; the config sets jit = off).
  rm -rf -- "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* \
    "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* "$dir"/var/log/*.log \
    "$dir"/usr/share/i18n "$dir$PG_BIN/../lib/llvmjit"* "$dir$PG_BIN/../lib/bitcode" \
    "$dir"/usr/lib/*-linux-gnu/libLLVM* "$dir"/usr/lib/*-linux-gnu/libz3.so*
  mkdir -p "$dir$MOUNT_POINT"
}

cmd_fetch() {
  if fetched; then
    log "TimescaleDB root file system already in $ROOTFS ($(tr '\n' ' ' <"$ROOTFS/etc/tradingbot-timescaledb.versions" 2>/dev/null))"
    return 0
  fi
  require_root fetch
  mkdir -p "$BASE"
  (
    flock -w 900 8 || die "timed out waiting for another fetch ($BASE/.fetch.lock)"
    if fetched; then exit 0; fi
    local archive tmp t0=$SECONDS
    archive="$(tarball)"
    tmp="$(mktemp -d "$BASE/rootfs.tmp.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf -- "$tmp" "$archive.tmp"' EXIT
    if [[ -f "$archive" ]]; then
      log "restoring the root file system from $archive ..."
      tar -C "$tmp" -I "$(tar_codec "$archive")" -xpf "$archive" ||
        die "cannot unpack $archive (delete it to build it again)"
    else
      build_rootfs "$tmp"
      log "caching the root file system as $archive ..."
      tar -C "$tmp" -I "$(tar_codec "$archive")" --numeric-owner -cpf "$archive.tmp" . ||
        die "cannot write $archive.tmp"
      mv -f -- "$archive.tmp" "$archive"
      local old
      for old in "$BASE/$SUITE-pg$PG_MAJOR-timescaledb-"*.tar.*; do
        [[ "$old" == "$archive" || ! -f "$old" ]] || { log "removing the outdated $old"; rm -f -- "$old"; }
      done
    fi
    make_devices "$tmp"
    fingerprint >"$tmp/.tradingbot-rootfs"
    rm -rf -- "$ROOTFS"
    mv -- "$tmp" "$ROOTFS"
    trap - EXIT
    log "root file system ready in $ROOTFS after $((SECONDS - t0))s ($(tr '\n' ' ' <"$ROOTFS/etc/tradingbot-timescaledb.versions" 2>/dev/null))"
  ) 8>"$BASE/.fetch.lock"
}

# ---------------------------------------------------------------- processes

# uid:gid of the chroot's postgres user.
pg_ids() {
  local line
  line="$(grep '^postgres:' "$ROOTFS/etc/passwd")" || die "no postgres user in $ROOTFS/etc/passwd (run: $0 reset; rm -rf $ROOTFS; $0 fetch)"
  IFS=: read -r _ _ PG_UID PG_GID _ <<<"$line"
}

# Marker on the server's command line: "our server on port N".
marker() { printf 'cluster_name=tradingbot-timescaledb-%s' "$PORT"; }

is_alive() {
  local state
  state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

is_our_server() {
  local pid="$1" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$PG_BIN/postgres "* && "$cmdline" == *"$(marker) "* ]] && is_alive "$pid"
}

server_pid() {
  local pid=""
  if [[ -f "$PID_FILE" ]]; then
    read -r pid _ <"$PID_FILE" || true
    if is_our_server "$pid"; then printf '%s\n' "$pid"; return 0; fi
  fi
  for pid in $(pgrep -f -- "$PG_BIN/postgres .*$(marker)" 2>/dev/null || true); do
    if is_our_server "$pid"; then printf '%s\n' "$pid"; return 0; fi
  done
  return 0
}

# The data dir a running server of ours uses (recorded at start).
server_data_dir() { sed -n 's/^bind \(.*\) -> .*/\1/p' "$MOUNTS_FILE" 2>/dev/null | head -n1; }

# Pids of the processes in mount namespace $1 (the server and its children).
namespace_pids() {
  local ns="$1" p
  [[ -n "$ns" ]] || return 0
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/ns/mnt" 2>/dev/null)" == "$ns" ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

port_owner() {
  local port="$1" line pid cmdline
  if command -v ss >/dev/null 2>&1; then
    line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)"
    [[ -n "$line" ]] || return 0
    pid="$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line" | head -n1)"
    if [[ -n "$pid" ]]; then
      cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160 || true)"
      printf 'pid %s (%s)' "$pid" "$cmdline"
      if [[ "$cmdline" == /usr/lib/postgresql/* ]]; then
        printf "; probably Debian's own PostgreSQL cluster (pg_lsclusters)"
      fi
    else
      printf 'another process (%s)' "$(awk '{print $4}' <<<"$line")"
    fi
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    printf 'another process'
  fi
}

lock_port() {
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK_FILE"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 120)) 9 ||
    die "timed out waiting for another timescaledb.sh on port $PORT ($LOCK_FILE)"
}

# in_chroot DATA_DIR CMD...: run CMD as the chroot's postgres user, chrooted,
# in a new private mount namespace with DATA_DIR bind-mounted at /srv/tradingbot,
# a private tmpfs on /dev/shm and /proc. Execs all the way, so call it in a
# subshell, ( in_chroot ... ) or in_chroot ... &, and the subshell's pid is CMD's.
in_chroot() {
  local data="$1"
  shift
  exec unshare --mount --propagation private -- /bin/sh -c '
    set -e
    root="$1" data="$2" point="$3" ids="$4"
    shift 4
    mount --bind "$data" "$root$point"
    mount -t tmpfs -o size=512m,mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    exec chroot --userspec="$ids" --groups="${ids#*:}" "$root" \
      /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/var/lib/postgresql TZ=UTC "$@"' \
    sh "$ROOTFS" "$data" "$MOUNT_POINT" "$PG_UID:$PG_GID" "$@"
}

# in_server PID CMD...: run CMD as postgres inside the mount namespace and chroot of server PID.
in_server() {
  local pid="$1"
  shift
  nsenter --target "$pid" --mount -- chroot --userspec="$PG_UID:$PG_GID" --groups="$PG_GID" "$ROOTFS" \
    /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/var/lib/postgresql "$@"
}

# ---------------------------------------------------------------- data dir

readonly DATA_MARKER=.tradingbot-timescaledb-data

remove_data_dir() {
  local d="$DATA_DIR"
  [[ -e "$d" ]] || return 0
  case "$d" in
    / | "$HOME" | "$REPO_ROOT" | "$CACHE_ROOT" | "$BASE" | "$RUN_DIR" | "$ROOTFS")
      die "refusing to delete $d" ;;
  esac
  if [[ ! -f "$d/$DATA_MARKER" && -n "$(ls -A -- "$d")" ]]; then
    die "refusing to delete $d: not a timescaledb.sh data dir (no $DATA_MARKER in it)"
  fi
  rm -rf -- "$d"
}

write_config() {
  cat >"$DATA_DIR/tradingbot.conf" <<EOF
# Generated by deploy/local/timescaledb/timescaledb.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$MOUNT_POINT'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 60
max_worker_processes = 16
timescaledb.max_background_workers = 8
shared_buffers = '$SHARED_BUFFERS'
dynamic_shared_memory_type = posix
huge_pages = off
jit = off
max_wal_size = '2GB'
checkpoint_timeout = '15min'
log_timezone = 'UTC'
timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
EOF
  chown "$PG_UID:$PG_GID" "$DATA_DIR/tradingbot.conf"
}

init_data_dir() {
  log "initdb in $DATA_DIR/pgdata"
  local pwfile="$DATA_DIR/.pwfile"
  printf '%s\n' "$DB_PASSWORD" >"$pwfile"
  chown "$PG_UID:$PG_GID" "$pwfile"
  chmod 600 "$pwfile"
  if ! (in_chroot "$DATA_DIR" "$PG_BIN/initdb" -D "$PGDATA_IN" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=scram-sha-256 --pwfile="$MOUNT_POINT/.pwfile") \
      >>"$SERVER_LOG" 2>&1; then
    rm -f -- "$pwfile"
    tail -n 20 "$SERVER_LOG" >&2
    die "initdb failed (see $SERVER_LOG)"
  fi
  rm -f -- "$pwfile"
  printf "\ninclude '%s/tradingbot.conf'\n" "$MOUNT_POINT" >>"$DATA_DIR/pgdata/postgresql.conf"
}

# The role and database of a new data dir (the server is running).
bootstrap_roles() {
  local pid="$1"
  [[ -f "$DATA_DIR/.bootstrapped" ]] && return 0
  if ! in_server "$pid" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$MOUNT_POINT" -p "$PORT" -U postgres -d postgres \
      >>"$SERVER_LOG" 2>&1 <<EOF; then
SELECT 'CREATE ROLE $DB_USER LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') \gexec
ALTER ROLE $DB_USER PASSWORD '$DB_PASSWORD';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
EOF
    tail -n 20 "$SERVER_LOG" >&2
    log "creating role $DB_USER and database $DB_NAME failed (see $SERVER_LOG); stopping the server"
    return 1
  fi
  touch "$DATA_DIR/.bootstrapped"
}

# wait_ready PID: 0 ready, 1 timeout, 2 process died.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT)) status
  while :; do
    is_alive "$pid" || return 2
    # postmaster.pid: line 1 the pid, line 8 the status ("ready" once it accepts connections).
    status="$(sed -n '8p' "$DATA_DIR/pgdata/postmaster.pid" 2>/dev/null | tr -d ' ')"
    if [[ "$status" == ready && "$(head -n1 "$DATA_DIR/pgdata/postmaster.pid" 2>/dev/null)" == "$pid" ]] &&
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      return 0
    fi
    (( SECONDS < deadline )) || return 1
    sleep 0.1
  done
}

show_log_tail() {
  log "last 30 lines of $SERVER_LOG:"
  tail -n 30 -- "$SERVER_LOG" >&2 2>/dev/null || true
}

url() { printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$PORT" "$DB_NAME"; }

# ---------------------------------------------------------------- commands

cmd_start() {
  validate_env
  require_root start
  cmd_fetch
  pg_ids
  lock_port
  local pid
  pid="$(server_pid)"
  if [[ -n "$pid" && "${TIMESCALEDB_FRESH:-0}" == 1 ]]; then
    log "TIMESCALEDB_FRESH=1: stopping the running server first"
    stop_server "$pid"
    pid=""
  fi
  if [[ -n "$pid" ]]; then
    local recorded
    recorded="$(server_data_dir)"
    DATA_DIR="${recorded:-$DATA_DIR}"
    SERVER_LOG="$DATA_DIR/server.log"
    local rc=0
    wait_ready "$pid" || rc=$?
    (( rc == 0 )) || die "timescaledb pid $pid on port $PORT is running but not answering (see $SERVER_LOG)"
    log "timescaledb already running on 127.0.0.1:$PORT (pid $pid, data $DATA_DIR)"
    return 0
  fi
  local owner
  owner="$(port_owner "$PORT")"
  [[ -z "$owner" ]] || die "port $PORT is taken by $owner; stop it or set TIMESCALEDB_PORT"

  if [[ "${TIMESCALEDB_FRESH:-0}" == 1 ]]; then
    log "TIMESCALEDB_FRESH=1: deleting $DATA_DIR"
    remove_data_dir
  fi
  mkdir -p "$DATA_DIR"
  [[ -f "$DATA_DIR/$DATA_MARKER" || -z "$(ls -A -- "$DATA_DIR")" ]] ||
    die "$DATA_DIR is not empty and not a timescaledb.sh data dir (no $DATA_MARKER); choose another TIMESCALEDB_DATA_DIR"
  echo "data dir of deploy/local/timescaledb/timescaledb.sh; safe to delete when the server is stopped" >"$DATA_DIR/$DATA_MARKER"
  chown "$PG_UID:$PG_GID" "$DATA_DIR"
  chmod 700 "$DATA_DIR"
  [[ -f "$SERVER_LOG" ]] && mv -f -- "$SERVER_LOG" "$SERVER_LOG.1"
  printf '=== timescaledb.sh start %s: port %s\n' "$(date -Is)" "$PORT" >"$SERVER_LOG"
  [[ -f "$DATA_DIR/pgdata/PG_VERSION" ]] || init_data_dir
  write_config

  in_chroot "$DATA_DIR" "$PG_BIN/postgres" -D "$PGDATA_IN" -c "$(marker)" \
    </dev/null >>"$SERVER_LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  local t0=$SECONDS rc=0
  wait_ready "$pid" || rc=$?
  case "$rc" in
    0) ;;
    2) rm -f -- "$PID_FILE"; show_log_tail; die "timescaledb exited during startup" ;;
    *) show_log_tail; log "timescaledb not ready after ${START_TIMEOUT}s; stopping it"
       stop_server "$pid"; die "timescaledb did not become ready on 127.0.0.1:$PORT" ;;
  esac
  local ns
  ns="$(readlink "/proc/$pid/ns/mnt")"
  cat >"$MOUNTS_FILE" <<EOF
namespace $ns of pid $pid (private: none of these is mounted in the host's namespace)
bind $DATA_DIR -> $ROOTFS$MOUNT_POINT
tmpfs -> $ROOTFS/dev/shm
proc -> $ROOTFS/proc
EOF
  bootstrap_roles "$pid" || { stop_server "$pid"; die "the new data dir $DATA_DIR has no role $DB_USER"; }
  log "timescaledb ready on 127.0.0.1:$PORT after $((SECONDS - t0))s (pid $pid, data $DATA_DIR, log $SERVER_LOG); connect: $(url)"
}

# stop_server PID: fast shutdown, then immediate, then SIGKILL; waits until every
# process of the server's mount namespace is gone (which drops its mounts).
stop_server() {
  local pid="$1" ns waited=0 left
  if [[ -z "$pid" ]]; then
    rm -f -- "$PID_FILE" "$MOUNTS_FILE"
    log "timescaledb on port $PORT is not running"
    return 0
  fi
  ns="$(readlink "/proc/$pid/ns/mnt" 2>/dev/null || true)"
  log "stopping timescaledb on port $PORT (pid $pid)"
  kill -INT "$pid" 2>/dev/null || true
  while is_alive "$pid"; do
    if (( waited == STOP_TIMEOUT * 10 )); then
      log "pid $pid did not stop after ${STOP_TIMEOUT}s; immediate shutdown (SIGQUIT)"
      kill -QUIT "$pid" 2>/dev/null || true
    elif (( waited >= STOP_TIMEOUT * 10 + 50 )); then
      log "pid $pid still there; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  # Children exit once they see the postmaster gone; wait for them (and kill stragglers).
  waited=0
  while left="$(namespace_pids "$ns")" && [[ -n "$left" && "$ns" != "$(readlink /proc/self/ns/mnt)" ]]; do
    if (( waited >= 100 )); then
      # shellcheck disable=SC2086 # one pid per word
      kill -KILL $left 2>/dev/null || true
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f -- "$PID_FILE" "$MOUNTS_FILE"
  log "stopped"
}

cmd_stop() {
  validate_env
  [[ -d "$RUN_DIR" ]] || { log "timescaledb on port $PORT is not running"; return 0; }
  lock_port
  stop_server "$(server_pid)"
}

cmd_status() {
  validate_env
  local pid edition=""
  pid="$(server_pid)"
  if [[ -z "$pid" ]]; then
    echo "timescaledb on 127.0.0.1:$PORT: not running"
    return 1
  fi
  if (( EUID == 0 )) && [[ -f "$ROOTFS/etc/passwd" ]]; then
    pg_ids
    # The license setting exists once the extension is loaded (after `tradingbot db migrate`).
    edition="$(in_server "$pid" "$PG_BIN/psql" -X -At -h "$MOUNT_POINT" -p "$PORT" -U postgres -d "$DB_NAME" \
      -c "SELECT current_setting('timescaledb.license', true)" 2>/dev/null || true)"
  fi
  echo "timescaledb on 127.0.0.1:$PORT: running (pid $pid, data $(server_data_dir)${edition:+, edition $edition}); $(url)"
}

cmd_reset() {
  validate_env
  mkdir -p "$RUN_DIR"
  lock_port
  local pid
  pid="$(server_pid)"
  if [[ -n "$pid" && -z "${TIMESCALEDB_DATA_DIR:-}" ]]; then DATA_DIR="$(server_data_dir)"; fi
  stop_server "$pid"
  log "deleting $DATA_DIR"
  remove_data_dir
}

cmd_psql() {
  validate_env
  require_root psql
  local pid
  pid="$(server_pid)"
  [[ -n "$pid" ]] || die "timescaledb on port $PORT is not running (start it: $0 start)"
  pg_ids
  in_server "$pid" "$PG_BIN/psql" -X -h "$MOUNT_POINT" -p "$PORT" -U "$DB_USER" -d "$DB_NAME" "$@"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  local command="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$command" in
    fetch) validate_env; cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    url) validate_env; url ;;
    psql) cmd_psql "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
