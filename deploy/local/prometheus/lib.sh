# shellcheck shell=bash disable=SC2153 # PORT, ARGS, ...: set by the sourcing script
# Helpers shared by deploy/local/prometheus/prometheus.sh and
# deploy/local/alertmanager/alertmanager.sh: install from apt, start one
# daemon per port in the background (pid file, log, flock), wait for its
# /-/ready endpoint, stop it. Sourced, not run.
#
# The sourcing script sets, before calling anything here:
#   TAG          prefix of messages                         (prometheus.sh)
#   WHAT         human name                                 (prometheus)
#   PORT         the HTTP port the daemon listens on (127.0.0.1)
#   DATA_DIR RUN_DIR PID_FILE LOCK_FILE LOG_FILE
#   START_TIMEOUT STOP_TIMEOUT  seconds
#   BIN          absolute path of the daemon's binary (resolve_bin)
#   BIN_NAMES    basenames the daemon's binary may have
# and defines build_args, which fills the array ARGS with the daemon's flags.

log() { printf '%s: %s\n' "$TAG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$TAG" "$*" >&2; exit 1; }

is_port() { [[ "$1" =~ ^[1-9][0-9]*$ ]] && (( $1 >= 1 && $1 <= 65535 )); }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# A YAML single-quoted scalar.
yaml_quote() { local s="$1"; printf "'%s'" "${s//\'/\'\'}"; }

# ---------------------------------------------------------------- install

# Prints the first of the given commands found on PATH or in /usr/bin, or nothing.
find_bin() {
  local name path
  for name in "$@"; do
    path="$(command -v -- "$name" 2>/dev/null || true)"
    [[ -z "$path" && -x "/usr/bin/$name" ]] && path="/usr/bin/$name"
    if [[ -n "$path" ]]; then printf '%s\n' "$path"; return 0; fi
  done
  return 0
}

# service_running SERVICE: Debian's init script says the system daemon runs.
service_running() {
  [[ -x "/etc/init.d/$1" ]] || return 1
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl is-active --quiet "$1" 2>/dev/null
  else
    "/etc/init.d/$1" status >/dev/null 2>&1
  fi
}

# stop_system_service SERVICE: stop the distribution's daemon and keep it from
# starting at boot. Our own instances never use it: they bind 127.0.0.1 with
# their own config and data dir, and the system one would hold the default port.
stop_system_service() {
  local svc="$1"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  else
    if service_running "$svc"; then
      log "stopping the system service '$svc' started by the package (it would hold the default port)"
      if command -v service >/dev/null 2>&1; then
        service "$svc" stop >/dev/null 2>&1 || true
      else
        "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
      fi
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [[ -x "/etc/init.d/$svc" ]]; then
      update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  fi
  if service_running "$svc"; then
    log "warning: the system service '$svc' still runs; stop it: service $svc stop"
  fi
}

# apt_install PACKAGE SERVICE BIN...: install PACKAGE unless every BIN is
# there (a BIN may be "name1|name2": either will do); after a fresh install,
# stop and disable the system service SERVICE.
apt_install() {
  local pkg="$1" svc="$2" missing=() found=() b path
  shift 2
  for b in "$@"; do
    # shellcheck disable=SC2086 # "a|b" splits into alternatives
    path="$(find_bin ${b//|/ })"
    if [[ -n "$path" ]]; then found+=("$path"); else missing+=("${b//|/ or }"); fi
  done
  if (( ${#missing[@]} == 0 )); then
    log "$pkg already installed (${found[*]})"
    if service_running "$svc"; then
      log "note: the system service '$svc' runs and may hold the default port; stop it with: service $svc stop"
    fi
    return 0
  fi
  local hint="apt-get install -y --no-install-recommends $pkg"
  if (( EUID != 0 )); then
    die "${missing[*]} not found; install them as root: sudo $hint (then run this script again)"
  fi
  command -v apt-get >/dev/null 2>&1 || die "${missing[*]} not found and there is no apt-get; install the '$pkg' package of your distribution"
  log "installing $pkg from apt (missing: ${missing[*]}) ..."
  local t0=$SECONDS out
  if ! out="$(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 25 >&2
    die "'$hint' failed (run 'apt-get update' first if the package is not found)"
  fi
  stop_system_service "$svc"
  for b in "$@"; do
    # shellcheck disable=SC2086 # "a|b" splits into alternatives
    [[ -n "$(find_bin ${b//|/ })" ]] || die "$pkg is installed but ${b//|/ or } is still missing"
  done
  log "installed $pkg in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- processes

# Alive and not a zombie.
is_alive() {
  local state
  state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

listen_flag() { printf -- '--web.listen-address=127.0.0.1:%s' "$PORT"; }

# Is pid $1 one of our daemons for $PORT? Its binary is one of BIN_NAMES and
# its command line has our listen address (a system daemon listens on :PORT).
is_ours() {
  local pid="$1" args=() a name match=1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  mapfile -d '' -t args <"/proc/$pid/cmdline" 2>/dev/null || return 1
  (( ${#args[@]} > 0 )) || return 1
  name="${args[0]##*/}"
  for a in "${BIN_NAMES[@]}"; do [[ "$name" == "$a" ]] && match=0; done
  (( match == 0 )) || return 1
  for a in "${args[@]:1}"; do [[ "$a" == "$(listen_flag)" ]] && return 0; done
  return 1
}

# Prints the pid of our daemon on $PORT, or nothing.
daemon_pid() {
  local pid=""
  if [[ -f "$PID_FILE" ]]; then
    read -r pid _ <"$PID_FILE" || true
    if is_ours "$pid" && is_alive "$pid"; then printf '%s\n' "$pid"; return 0; fi
  fi
  for pid in $(pgrep -f -- "$(listen_flag)" 2>/dev/null || true); do
    if is_ours "$pid" && is_alive "$pid"; then printf '%s\n' "$pid"; return 0; fi
  done
  return 0
}

# The value of flag $2 (e.g. --config.file) on the command line of pid $1.
pid_flag() {
  local args=() a
  mapfile -d '' -t args <"/proc/$1/cmdline" 2>/dev/null || return 0
  for a in "${args[@]}"; do
    if [[ "$a" == "$2="* ]]; then printf '%s\n' "${a#"$2="}"; return 0; fi
  done
}

# Describes who listens on TCP port $1 (empty output: nobody).
port_owner() {
  local port="$1" line users pid name
  if command -v ss >/dev/null 2>&1; then
    line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)"
    [[ -n "$line" ]] || return 0
    users="$(grep -o 'users:((.*))' <<<"$line" || true)"
    pid="$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$users")"
    name="$(sed -n 's/^users:(("\([^"]*\)".*/\1/p' <<<"$users")"
    if [[ -n "$pid" ]]; then
      local cmdline
      cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
      local other
      other="$(sed -n 's/.*--web\.listen-address=127\.0\.0\.1:\([0-9]*\)\( .*\)\{0,1\}$/\1/p' <<<"$cmdline")"
      case "${cmdline%% *}" in
        */prometheus) [[ -n "$other" ]] && { printf 'the prometheus.sh prometheus of PROMETHEUS_PORT=%s (pid %s)' "$other" "$pid"; return 0; } ;;
        */prometheus-alertmanager | */alertmanager) [[ -n "$other" ]] && { printf 'the alertmanager.sh alertmanager of ALERTMANAGER_PORT=%s (pid %s)' "$other" "$pid"; return 0; } ;;
      esac
      printf 'pid %s (%s: %s)' "$pid" "${name:-?}" "$(cut -c1-160 <<<"$cmdline")"
      if [[ "$cmdline" == /usr/bin/* && "$cmdline" != *"$(listen_flag)"* ]]; then
        case "${cmdline%% *}" in
          */prometheus) printf "; probably Debian's system service, 'service prometheus stop' stops it" ;;
          */prometheus-alertmanager | */alertmanager) printf "; probably Debian's system service, 'service prometheus-alertmanager stop' stops it" ;;
        esac
      fi
    else
      printf 'another process (%s)' "$(awk '{print $4}' <<<"$line")"
    fi
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    printf 'another process'
  fi
}

stop_pid() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while is_alive "$pid"; do
    if (( waited >= STOP_TIMEOUT * 5 )); then
      log "$WHAT pid $pid did not exit after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while is_alive "$pid"; do sleep 0.2; done
      break
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

lock_port() {
  mkdir -p "$RUN_DIR"
  exec 9>"$LOCK_FILE"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 60)) 9 ||
    die "timed out waiting for another $TAG on port $PORT ($LOCK_FILE)"
}

# ---------------------------------------------------------------- http

# http_get URL: body on stdout; fails on connection errors and non-2xx.
http_get() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 3 -- "$1" 2>/dev/null
  else
    python3 - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
    sys.stdout.write(r.read().decode())
EOF
  fi
}

http_post() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 10 -X POST -- "$1" >/dev/null 2>&1
  else
    python3 - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=10).read()
EOF
  fi
}

ready_url() { printf 'http://127.0.0.1:%s/-/ready' "$PORT"; }

# wait_ready PID: 0 ready, 1 timeout, 2 process died.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    is_alive "$pid" || return 2
    http_get "$(ready_url)" >/dev/null && return 0
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
}

show_log_tail() {
  log "last 40 lines of $LOG_FILE:"
  tail -n 40 -- "$LOG_FILE" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------- commands

# start_daemon: the common part of `start` once the config is in place and
# the port lock is held. Fails if the port is taken by another process.
start_daemon() {
  local owner
  owner="$(port_owner "$PORT")"
  [[ -z "$owner" ]] || die "port $PORT is taken by $owner; stop it or set ${PORT_VAR:-the port variable}"

  mkdir -p "$DATA_DIR"
  [[ -f "$LOG_FILE" ]] && mv -f -- "$LOG_FILE" "$LOG_FILE.1"
  build_args
  printf '=== %s start %s: %s %s\n' "$TAG" "$(date -Is)" "$BIN" "${ARGS[*]}" >"$LOG_FILE"

  log "starting $WHAT on 127.0.0.1:$PORT (data $DATA_DIR)"
  setsid "$BIN" "${ARGS[@]}" </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  local pid=$!
  echo "$pid" >"$PID_FILE"

  local t0=$SECONDS rc=0
  wait_ready "$pid" || rc=$?
  case "$rc" in
    0) log "$WHAT ready on http://127.0.0.1:$PORT after $((SECONDS - t0))s (pid $pid, log $LOG_FILE)" ;;
    2) rm -f -- "$PID_FILE"; show_log_tail; die "$WHAT exited during startup" ;;
    *) show_log_tail; log "$WHAT not ready after ${START_TIMEOUT}s; stopping it"
       stop_pid "$pid"; rm -f -- "$PID_FILE"; die "$WHAT did not become ready on $(ready_url)" ;;
  esac
}

# Stops our daemon (caller holds the port lock).
stop_daemon() {
  local pid="$1"
  if [[ -z "$pid" ]]; then
    rm -f -- "$PID_FILE"
    log "$WHAT on port $PORT is not running"
    return 0
  fi
  log "stopping $WHAT on port $PORT (pid $pid)"
  stop_pid "$pid"
  rm -f -- "$PID_FILE"
  log "stopped"
}

cmd_stop() {
  lock_port
  stop_daemon "$(daemon_pid)"
}

cmd_status() {
  local pid
  pid="$(daemon_pid)"
  if [[ -z "$pid" ]]; then
    echo "$WHAT on 127.0.0.1:$PORT: not running"
    return 1
  fi
  local state=ready
  http_get "$(ready_url)" >/dev/null || state="not ready"
  echo "$WHAT on 127.0.0.1:$PORT: running, $state (pid $pid, config $(pid_flag "$pid" --config.file))"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}
