#!/usr/bin/env bash
# A private Docker Engine for `make compose-test` on a host that has none
# running: Debian's docker.io (dockerd 20.10) started by hand with its own
# data root, exec root, pid file and unix socket, so it shares nothing with a
# system Docker. Docker Compose v2 is Debian trixie's docker-compose package
# (2.26.1, needs only libc >= 2.34), unpacked as a CLI plugin. Needs root.
#
# Usage: docker.sh install|start|stop|status|env
#   install  apt-get install docker.io (no recommends) when dockerd is missing;
#            put Compose v2 where the docker client finds plugins
#   start    use the engine that answers at DOCKER_HOST (or the default socket)
#            when there is one; otherwise start the private engine and wait for it.
#            Prints the DOCKER_HOST to use on stdout.
#   stop     stop the private engine if this script started it (recorded pid), else nothing
#   status   "running (pid N, DOCKER_HOST=...)" exit 0 / "not running" exit 1
#   env      print `export DOCKER_HOST=...` for the private engine
#
# Environment:
#   TRADINGBOT_DOCKER_ROOT     data root of the private engine (images, volumes) [<cache>/docker/data]
#   TRADINGBOT_DOCKER_PRIVATE=1  start: always use the private engine, even if another answers
#   DOCKER_START_TIMEOUT       seconds to wait for the engine                [30]
#   TRADINGBOT_CACHE           cache root                                    [<repo>/.cache]
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../../.." && pwd)"
CACHE_ROOT="$(realpath -m -- "${TRADINGBOT_CACHE:-$REPO_ROOT/.cache}")"
readonly SCRIPT_DIR REPO_ROOT CACHE_ROOT
readonly BASE="$CACHE_ROOT/docker"
DATA_ROOT="$(realpath -m -- "${TRADINGBOT_DOCKER_ROOT:-$BASE/data}")"
readonly DATA_ROOT
# The exec root holds containerd's sockets: short paths (unix sockets are limited to 108 bytes).
ID="$(printf '%s' "$DATA_ROOT" | sha256sum | cut -c1-8)"
readonly ID
readonly EXEC_ROOT="/run/tradingbot-docker-$ID"
readonly RUN_DIR="$BASE/run"
readonly PID_FILE="$RUN_DIR/dockerd-$ID.pid" # one engine per data root
readonly SOCKET="$EXEC_ROOT/docker.sock"
readonly LOG_FILE="$BASE/dockerd.log"
readonly COMPOSE_SUITE=trixie
readonly COMPOSE_VERSION=2.26.1
readonly PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
START_TIMEOUT="${DOCKER_START_TIMEOUT:-30}"

log() { printf 'docker.sh: %s\n' "$*" >&2; }
die() { printf 'docker.sh: error: %s\n' "$*" >&2; exit 1; }

require_root() {
  (( EUID == 0 )) || die "$1 needs root (apt-get, dockerd); run it as root, e.g. sudo $0 $1"
}

# ---------------------------------------------------------------- install

compose_ok() { docker compose version 2>/dev/null | grep -qE "version v?2\."; }

install_compose() {
  compose_ok && return 0
  local work="$BASE/compose-deb"
  rm -rf -- "$work"
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/x"
  printf 'deb http://deb.debian.org/debian %s main\n' "$COMPOSE_SUITE" >"$work/sources.list"
  local -a apt_opts=(
    -o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
    -o "Dir::State::Status=/dev/null" -o "APT::Get::List-Cleanup=0"
  )
  log "fetching Docker Compose v2 ($COMPOSE_SUITE's docker-compose package) ..."
  apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1 || { tail -n 5 "$work/apt.log" >&2; die "cannot read Debian $COMPOSE_SUITE's package index (see $work/apt.log)"; }
  (cd "$work" && apt-get "${apt_opts[@]}" download docker-compose >>"$work/apt.log" 2>&1) ||
    { tail -n 5 "$work/apt.log" >&2; die "cannot download $COMPOSE_SUITE's docker-compose (see $work/apt.log)"; }
  local deb
  deb="$(ls "$work"/docker-compose_*.deb)"
  [[ "$(basename "$deb")" == docker-compose_"$COMPOSE_VERSION"* ]] ||
    log "note: $COMPOSE_SUITE has $(basename "$deb"), not $COMPOSE_VERSION"
  dpkg-deb -x "$deb" "$work/x"
  local bin
  bin="$(find "$work/x" -type f -name docker-compose -perm -u+x | head -n 1)"
  [[ -n "$bin" ]] || die "no docker-compose binary in $deb"
  mkdir -p "$PLUGIN_DIR"
  install -m 755 "$bin" "$PLUGIN_DIR/docker-compose"
  compose_ok || die "docker compose does not run after installing $PLUGIN_DIR/docker-compose"
  log "installed $(docker compose version) in $PLUGIN_DIR"
}

do_install() {
  command -v docker >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1 && compose_ok && return 0
  require_root install
  if ! command -v dockerd >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "dockerd not found and there is no apt-get; install Docker Engine"
    log "installing docker.io from apt (no recommends) ..."
    mkdir -p "$BASE"
    # A machine whose package lists are old or missing: update them once, then try again.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >"$BASE/apt.log" 2>&1 ||
      { apt-get update >>"$BASE/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >>"$BASE/apt.log" 2>&1; } ||
      { tail -n 5 "$BASE/apt.log" >&2; die "'apt-get install docker.io' failed (see $BASE/apt.log)"; }
  fi
  command -v docker >/dev/null 2>&1 || die "no docker client after installing docker.io"
  install_compose
}

# ---------------------------------------------------------------- start / stop

answers() { DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

our_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  printf '%s\n' "$pid"
}

start() {
  if [[ "${TRADINGBOT_DOCKER_PRIVATE:-0}" != 1 ]]; then
    local given="${DOCKER_HOST:-unix:///var/run/docker.sock}"
    if answers "$given"; then
      log "using the Docker Engine at $given"
      printf '%s\n' "$given"
      return 0
    fi
  fi
  if our_pid >/dev/null; then
    printf 'unix://%s\n' "$SOCKET"
    return 0
  fi
  require_root start
  do_install
  mkdir -p "$RUN_DIR" "$DATA_ROOT" "$EXEC_ROOT"
  log "starting a private Docker Engine (data root $DATA_ROOT, log $LOG_FILE) ..."
  # setsid: the engine outlives this script; `stop` ends it by its recorded pid.
  setsid dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$EXEC_ROOT/dockerd.pid" \
    -H "unix://$SOCKET" >>"$LOG_FILE" 2>&1 </dev/null &
  local pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  local waited=0
  until answers "unix://$SOCKET"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG_FILE" >&2; rm -f "$PID_FILE"; die "dockerd exited (see $LOG_FILE)"; }
    (( waited++ < START_TIMEOUT * 5 )) || { stop; die "dockerd did not answer within ${START_TIMEOUT}s (see $LOG_FILE)"; }
    sleep 0.2
  done
  log "private Docker Engine running (pid $pid)"
  printf 'unix://%s\n' "$SOCKET"
}

stop() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping the private Docker Engine (pid $pid) ..."
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if (( waited++ > 300 )); then
      log "dockerd did not stop in 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PID_FILE"
}

status() {
  local pid
  if pid="$(our_pid)"; then
    printf 'running (pid %s, DOCKER_HOST=unix://%s)\n' "$pid" "$SOCKET"
    return 0
  fi
  printf 'not running\n'
  return 1
}

case "${1:-}" in
  install) do_install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) printf 'export DOCKER_HOST=unix://%s\n' "$SOCKET" ;;
  *) die "usage: $0 install|start|stop|status|env" ;;
esac
