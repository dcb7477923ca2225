#!/usr/bin/env bash
# Local Prometheus (Debian's package, 2.42) for development and tests: scrapes
# the services listed in a file_sd targets file every second, evaluates the
# alert rules of deploy/prometheus/rules/ and sends alerts to Alertmanager.
# Listens on 127.0.0.1 only.
#
# Usage: prometheus.sh install|start|stop|status|config [FILE]|targets [SERVICE=HOST:PORT ...]
#   install   apt-get install prometheus (gives promtool too) if missing; root only
#   start     write the config, start, wait until /-/ready answers (idempotent)
#   config    print the generated config (or write it to FILE); starts nothing
#   targets   write the targets file: the given SERVICE=HOST:PORT pairs, or
#             the five services on their default ports (127.0.0.1:9101-9105)
#
# Environment:
#   PROMETHEUS_PORT           HTTP port                                 [9090]
#   PROMETHEUS_DATA_DIR       config, log, tsdb/                        [<cache>/prometheus/data-$PROMETHEUS_PORT]
#   PROMETHEUS_CONFIG         use this config file as is                [the generated <data dir>/prometheus.yml]
#   PROMETHEUS_TARGETS_FILE   file_sd JSON file of the tradingbot job   [<data dir>/targets.json]
#   ALERTMANAGER_URL          where alerts go; empty: nowhere           [http://127.0.0.1:9093]
#   PROMETHEUS_START_TIMEOUT  start: seconds to wait for readiness      [60]
#   PROMETHEUS_STOP_TIMEOUT   stop: seconds before SIGKILL              [20]
#   PROMETHEUS_BIN            the prometheus binary                     [prometheus on PATH or /usr/bin]
#   TRADINGBOT_CACHE          cache root                                [<repo>/.cache]
set -euo pipefail
shopt -s inherit_errexit # a failing $(...) inside a $(...) stops the script too
shopt -u patsub_replacement 2>/dev/null || true # bash 5.2: '&' in ${x//p/r} is literal

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../../.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly TEMPLATE="$SCRIPT_DIR/prometheus.yml.in"
readonly RULES_DIR="$REPO_ROOT/deploy/prometheus/rules"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

TAG=prometheus.sh
WHAT=prometheus
PORT_VAR=PROMETHEUS_PORT
BIN_NAMES=(prometheus)
if [[ -n "${PROMETHEUS_BIN:-}" ]]; then BIN_NAMES+=("$(basename -- "$PROMETHEUS_BIN")"); fi

CACHE_ROOT="$(realpath -m -- "${TRADINGBOT_CACHE:-$REPO_ROOT/.cache}")"
RUN_DIR="$CACHE_ROOT/prometheus/run"
PORT="${PROMETHEUS_PORT:-9090}"
START_TIMEOUT="${PROMETHEUS_START_TIMEOUT:-60}"
STOP_TIMEOUT="${PROMETHEUS_STOP_TIMEOUT:-20}"
ALERTMANAGER_URL="${ALERTMANAGER_URL-http://127.0.0.1:9093}"

validate_env() {
  is_port "$PORT" || die "PROMETHEUS_PORT='$PORT' is not a port number"
  is_uint "$START_TIMEOUT" || die "PROMETHEUS_START_TIMEOUT must be a number of seconds"
  is_uint "$STOP_TIMEOUT" || die "PROMETHEUS_STOP_TIMEOUT must be a number of seconds"
  DATA_DIR="$(realpath -m -- "${PROMETHEUS_DATA_DIR:-$CACHE_ROOT/prometheus/data-$PORT}")"
  PID_FILE="$RUN_DIR/prometheus-$PORT.pid"
  LOCK_FILE="$RUN_DIR/prometheus-$PORT.lock"
  LOG_FILE="$DATA_DIR/prometheus.log"
  TSDB_DIR="$DATA_DIR/tsdb"
  TARGETS_FILE="$(realpath -m -- "${PROMETHEUS_TARGETS_FILE:-$DATA_DIR/targets.json}")"
  if [[ -n "${PROMETHEUS_CONFIG:-}" ]]; then
    CONFIG="$(realpath -m -- "$PROMETHEUS_CONFIG")"
    GENERATED=0
  else
    CONFIG="$DATA_DIR/prometheus.yml"
    GENERATED=1
  fi
}

resolve_bin() {
  BIN="${PROMETHEUS_BIN:-$(find_bin prometheus)}"
  [[ -n "$BIN" && -x "$BIN" ]] ||
    die "prometheus not found; run: deploy/local/prometheus/prometheus.sh install (as root)"
}

# ---------------------------------------------------------------- config

# The alerting.alertmanagers entries for ALERTMANAGER_URL (http[s]://host:port[/prefix]).
alertmanagers_yaml() {
  if [[ -z "$ALERTMANAGER_URL" ]]; then
    printf '    []\n'
    return 0
  fi
  [[ "$ALERTMANAGER_URL" =~ ^(https?)://([^/?#]+)(/[^?#]*)?$ ]] ||
    die "ALERTMANAGER_URL='$ALERTMANAGER_URL' is not http[s]://host:port[/path]"
  local scheme="${BASH_REMATCH[1]}" hostport="${BASH_REMATCH[2]}" prefix="${BASH_REMATCH[3]:-/}"
  printf '    - scheme: %s\n      path_prefix: %s\n      static_configs:\n        - targets: [%s]\n' \
    "$scheme" "$(yaml_quote "$prefix")" "$(yaml_quote "$hostport")"
}

# Every rule file of deploy/prometheus/rules except the promtool tests
# (*.test.yml), which Prometheus cannot load.
rule_files_yaml() {
  local f any=0
  for f in "$RULES_DIR"/*.yml; do
    [[ -f "$f" && "$f" != *.test.yml ]] || continue
    printf '  - %s\n' "$(yaml_quote "$f")"
    any=1
  done
  (( any )) || die "no rule files in $RULES_DIR"
}

render_config() {
  local text rules ams targets
  text="$(<"$TEMPLATE")"
  rules="$(rule_files_yaml)"
  ams="$(alertmanagers_yaml)"
  targets="$(yaml_quote "$TARGETS_FILE")"
  text="${text//@RULE_FILES@/$rules}"
  text="${text//@ALERTMANAGERS@/$ams}"
  text="${text//@TARGETS_FILE@/$targets}"
  text="${text//@PORT@/$PORT}"
  printf '%s\n' "$text"
}

# write_atomically FILE: stdin to FILE through a temp file and a rename.
write_atomically() {
  local tmp
  mkdir -p "$(dirname -- "$1")"
  tmp="$(mktemp "$1.tmp.XXXXXX")"
  cat >"$tmp"
  chmod 644 "$tmp"
  mv -f -- "$tmp" "$1"
}

ensure_targets_file() {
  [[ -e "$TARGETS_FILE" ]] || printf '[]\n' | write_atomically "$TARGETS_FILE"
}

cmd_config() {
  local text
  text="$(render_config)"
  if [[ -n "${1:-}" ]]; then
    printf '%s\n' "$text" | write_atomically "$1"
  else
    printf '%s\n' "$text"
  fi
}

cmd_targets() {
  local pairs=("$@") p service addr json="" sep=""
  if (( ${#pairs[@]} == 0 )); then
    pairs=(market-replay=127.0.0.1:9101 symbol-agent=127.0.0.1:9102 portfolio-manager=127.0.0.1:9103
      collapse-detector=127.0.0.1:9104 trainer=127.0.0.1:9105)
  fi
  for p in "${pairs[@]}"; do
    [[ "$p" =~ ^([a-z][a-z0-9-]*)=([A-Za-z0-9.-]+:[0-9]+)$ ]] || die "'$p' is not SERVICE=HOST:PORT"
    service="${BASH_REMATCH[1]}" addr="${BASH_REMATCH[2]}"
    json+="$sep"$'\n'"  {\"targets\": [\"$addr\"], \"labels\": {\"service\": \"$service\"}}"
    sep=","
  done
  printf '[%s\n]\n' "$json" | write_atomically "$TARGETS_FILE"
  log "wrote ${#pairs[@]} targets to $TARGETS_FILE"
}

# ---------------------------------------------------------------- commands

build_args() {
  ARGS=(
    "--config.file=$CONFIG"
    "--storage.tsdb.path=$TSDB_DIR"
    "$(listen_flag)"
    --web.enable-lifecycle
  )
}

cmd_install() {
  apt_install prometheus prometheus prometheus promtool
}

cmd_start() {
  resolve_bin
  lock_port
  mkdir -p "$DATA_DIR"
  if (( GENERATED )); then
    [[ -f "$TEMPLATE" ]] || die "missing $TEMPLATE"
    cmd_config "$CONFIG"
  else
    [[ -f "$CONFIG" ]] || die "PROMETHEUS_CONFIG=$CONFIG does not exist"
  fi
  ensure_targets_file

  local pid
  pid="$(daemon_pid)"
  if [[ -n "$pid" ]]; then
    local running_config
    running_config="$(pid_flag "$pid" --config.file)"
    LOG_FILE="$(dirname -- "$(pid_flag "$pid" --storage.tsdb.path)")/prometheus.log"
    log "prometheus already running on 127.0.0.1:$PORT (pid $pid)"
    echo "$pid" >"$PID_FILE"
    if [[ "$running_config" == "$CONFIG" ]]; then
      http_post "http://127.0.0.1:$PORT/-/reload" ||
        log "warning: reloading $CONFIG failed (see $LOG_FILE)"
    else
      log "warning: it runs with $running_config, not $CONFIG; 'stop' it first to switch"
    fi
    local rc=0
    wait_ready "$pid" || rc=$?
    (( rc == 0 )) || die "prometheus pid $pid on port $PORT is running but not ready (see $LOG_FILE)"
    return 0
  fi
  mkdir -p "$TSDB_DIR"
  start_daemon
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    install) cmd_install ;;
    start) validate_env; cmd_start ;;
    stop) validate_env; cmd_stop ;;
    status) validate_env; cmd_status ;;
    config) validate_env; cmd_config "$@" ;;
    targets) validate_env; cmd_targets "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
