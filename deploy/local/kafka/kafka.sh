#!/usr/bin/env bash
# Local single-node Apache Kafka 4.1.1 (KRaft, combined broker+controller) for
# development and tests. No Docker, no Kafka tarball: the jars come from Maven
# Central via pom.xml next to this script. Everything binds to 127.0.0.1.
#
# Usage: kafka.sh fetch|start|stop|status|reset
#
# Environment:
#   KAFKA_PORT             client (PLAINTEXT) port                  [9092]
#   KAFKA_CONTROLLER_PORT  KRaft controller port                    [KAFKA_PORT+2; +1 would be 9093, Alertmanager's]
#   KAFKA_DATA_DIR         data dir (logs, server.properties, ...)  [<cache>/kafka/data-$KAFKA_PORT]
#   KAFKA_HEAP             JVM heap flags                           [-Xms256m -Xmx768m]
#   KAFKA_OPTS             extra JVM flags                          []
#   KAFKA_FRESH=1          start: wipe and re-format the data dir first
#   KAFKA_START_TIMEOUT    start: seconds to wait for readiness     [90]
#   KAFKA_STOP_TIMEOUT     stop: seconds before SIGKILL             [30]
#   TRADINGBOT_CACHE       cache root                               [<repo>/.cache]
#   KAFKA_READY_PYTHON     python with aiokafka for the readiness probe [<repo>/.venv/bin/python]
set -euo pipefail

readonly KAFKA_VERSION=4.1.1
readonly JDK_HINT="install a JDK 17: apt-get install -y openjdk-17-jre-headless"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../../.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly POM="$SCRIPT_DIR/pom.xml"
readonly DEP_PLUGIN_VERSION=3.8.1 # keep in sync with pom.xml
readonly LOG4J_CONF="$SCRIPT_DIR/log4j2.properties"
readonly READY_PY="$SCRIPT_DIR/kafka_ready.py"

CACHE_ROOT="$(realpath -m -- "${TRADINGBOT_CACHE:-$REPO_ROOT/.cache}")"
readonly CACHE_ROOT
readonly DIST_DIR="$CACHE_ROOT/kafka/$KAFKA_VERSION"
readonly LIBS_DIR="$DIST_DIR/libs"
readonly STAMP_FILE="$DIST_DIR/fetched.stamp"
readonly RUN_DIR="$CACHE_ROOT/kafka/run"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx768m}"
KAFKA_OPTS="${KAFKA_OPTS:-}"
KAFKA_READY_PYTHON="${KAFKA_READY_PYTHON:-$REPO_ROOT/.venv/bin/python}"

# Marker on the broker's java command line: identifies "our broker on port N"
# independently of pid files (guards against pid reuse, finds lost pid files).
marker() { printf -- '-Dtradingbot.kafka.port=%s' "$KAFKA_PORT"; }

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

is_port() { [[ "$1" =~ ^[1-9][0-9]*$ ]] && (( $1 >= 1 && $1 <= 65535 )); }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

validate_env() {
  is_port "$KAFKA_PORT" || die "KAFKA_PORT='$KAFKA_PORT' is not a port number"
  KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 2))}"
  is_port "$KAFKA_CONTROLLER_PORT" || die "KAFKA_CONTROLLER_PORT='$KAFKA_CONTROLLER_PORT' is not a port number"
  [[ "$KAFKA_CONTROLLER_PORT" != "$KAFKA_PORT" ]] || die "KAFKA_CONTROLLER_PORT must differ from KAFKA_PORT"
  is_uint "$KAFKA_START_TIMEOUT" || die "KAFKA_START_TIMEOUT must be a number of seconds"
  is_uint "$KAFKA_STOP_TIMEOUT" || die "KAFKA_STOP_TIMEOUT must be a number of seconds"
  DATA_DIR="$(realpath -m -- "${KAFKA_DATA_DIR:-$CACHE_ROOT/kafka/data-$KAFKA_PORT}")"
  PID_FILE="$RUN_DIR/broker-$KAFKA_PORT.pid"
  LOCK_FILE="$RUN_DIR/broker-$KAFKA_PORT.lock"
  SERVER_LOG="$DATA_DIR/server.log"
  SERVER_PROPS="$DATA_DIR/server.properties"
  LOG_DIRS="$DATA_DIR/kraft-logs"
}

# ---------------------------------------------------------------- java / mvn

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    command -v java || true
  fi
}

require_java() {
  JAVA="$(java_bin)"
  [[ -n "$JAVA" ]] || die "java not found; $JDK_HINT"
  local out major
  out="$("$JAVA" -version 2>&1 || true)"
  # 'openjdk version "17.0.15" ...' / 'java version "1.8.0_392"'
  major="$(sed -n 's/.*version "\([0-9][0-9]*\)\(\.\([0-9][0-9]*\)\)\{0,1\}.*/\1 \3/p' <<<"$out" | head -n1)"
  [[ -n "$major" ]] || die "cannot tell the version of $JAVA ($out); $JDK_HINT"
  if [[ "${major% *}" == 1 ]]; then major="${major#* }"; else major="${major% *}"; fi
  (( major >= 17 )) || die "$JAVA is Java $major, Kafka $KAFKA_VERSION needs Java >= 17; $JDK_HINT"
}

require_mvn() {
  command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) not found; install it: apt-get install -y maven"
}

# ---------------------------------------------------------------- fetch

fetch_fingerprint() { sha256sum "$POM" | cut -d' ' -f1; }

fetched() {
  [[ -f "$STAMP_FILE" && -f "$LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]] &&
    [[ "$(cat "$STAMP_FILE")" == "$(fetch_fingerprint)" ]]
}

cmd_fetch() {
  require_java
  if fetched; then
    log "kafka $KAFKA_VERSION jars already in $LIBS_DIR"
    return 0
  fi
  require_mvn
  mkdir -p "$DIST_DIR"
  (
    # Serialise concurrent fetches (e.g. parallel test sessions).
    flock -w 600 8 || die "timed out waiting for another fetch ($DIST_DIR/.fetch.lock)"
    if fetched; then exit 0; fi
    log "fetching kafka $KAFKA_VERSION jars from Maven into $LIBS_DIR ..."
    local tmp mvn_log
    tmp="$(mktemp -d "$DIST_DIR/libs.tmp.XXXXXX")"
    mvn_log="$DIST_DIR/fetch.log"
    # Fully qualified goal (= dependency:copy-dependencies with the version
    # pinned in pom.xml): no plugin-prefix lookup, so a warm ~/.m2 works offline.
    if ! mvn -q -B -f "$POM" \
        "org.apache.maven.plugins:maven-dependency-plugin:$DEP_PLUGIN_VERSION:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' >"$mvn_log"; then
      rm -rf -- "$tmp"
      if grep -qiE 'could not transfer|could not resolve|unknownhost|unknown host|connection refused|connect to .* failed|timed out|network is unreachable|no route to host|PKIX path|no plugin found for prefix' "$mvn_log"; then
        log "Maven cannot reach its registry (Maven Central, or the mirror/proxy in ~/.m2/settings.xml)."
      else
        log "mvn failed."
      fi
      log "last lines of mvn output ($mvn_log):"
      tail -n 25 "$mvn_log" >&2
      exit 1
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf -- "$tmp"; die "mvn succeeded but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
    rm -rf -- "$LIBS_DIR"
    mv -- "$tmp" "$LIBS_DIR"
    fetch_fingerprint >"$STAMP_FILE"
    log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars into $LIBS_DIR"
  ) 8>"$DIST_DIR/.fetch.lock"
}

# ---------------------------------------------------------------- processes

# Is pid $1 a live broker started by us for $KAFKA_PORT?
is_our_broker() {
  local pid="$1" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$(marker) "* && "$cmdline" == *" kafka.Kafka "* ]]
}

# Prints the pid of our broker for $KAFKA_PORT, or nothing.
broker_pid() {
  local pid=""
  if [[ -f "$PID_FILE" ]]; then
    read -r pid _ <"$PID_FILE" || true
    if is_our_broker "$pid"; then printf '%s\n' "$pid"; return 0; fi
  fi
  # Pid file lost or stale: look for the marker on a java command line.
  for pid in $(pgrep -f -- "$(marker) .*kafka\.Kafka" 2>/dev/null || true); do
    if is_our_broker "$pid"; then printf '%s\n' "$pid"; return 0; fi
  done
  return 0
}

# Data dir of a running broker of ours: its last argument is <data dir>/server.properties.
broker_data_dir() {
  local props
  props="$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | tail -n1)"
  dirname -- "${props:-$DATA_DIR/server.properties}"
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
      local cmdline other
      cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
      other="$(sed -n 's/.*-Dtradingbot\.kafka\.port=\([0-9]*\) .*/\1/p' <<<"$cmdline")"
      if [[ -n "$other" ]]; then
        printf 'the kafka.sh broker of KAFKA_PORT=%s (pid %s)' "$other" "$pid"
      else
        printf 'pid %s (%s: %s)' "$pid" "${name:-?}" "$(cut -c1-120 <<<"$cmdline")"
      fi
    else
      printf 'another process (%s)' "$(awk '{print $4}' <<<"$line")"
    fi
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    printf 'another process'
  fi
}

# Alive and not a zombie (a broker that died during our own start stays a
# zombie child of this script, and kill -0 still succeeds on it).
is_alive() {
  local state
  state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

stop_pid() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while is_alive "$pid"; do
    if (( waited >= KAFKA_STOP_TIMEOUT * 5 )); then
      log "broker pid $pid did not exit after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
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
  flock -w $((KAFKA_START_TIMEOUT + KAFKA_STOP_TIMEOUT + 60)) 9 ||
    die "timed out waiting for another kafka.sh on port $KAFKA_PORT ($LOCK_FILE)"
}

# ---------------------------------------------------------------- readiness

have_probe_python() {
  [[ -x "$KAFKA_READY_PYTHON" ]] && "$KAFKA_READY_PYTHON" -c 'import aiokafka' >/dev/null 2>&1
}

probe() {
  if [[ "$PROBE" == python ]]; then
    "$KAFKA_READY_PYTHON" "$READY_PY" "127.0.0.1:$KAFKA_PORT" 5 >/dev/null 2>&1
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null &&
      grep -q 'Kafka Server started' "$SERVER_LOG" 2>/dev/null
  fi
}

# wait_ready PID: 0 ready, 1 timeout, 2 process died.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  if have_probe_python; then PROBE=python; else
    PROBE=tcp
    log "no python with aiokafka at $KAFKA_READY_PYTHON; readiness = TCP connect + 'Kafka Server started' in the log"
  fi
  while :; do
    is_alive "$pid" || return 2
    probe && return 0
    (( SECONDS < deadline )) || return 1
    sleep 0.5
  done
}

show_log_tail() {
  log "last 40 lines of $SERVER_LOG:"
  tail -n 40 "$SERVER_LOG" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------- data dir

readonly DATA_MARKER=.tradingbot-kafka-data

remove_data_dir() {
  local d="$DATA_DIR"
  [[ -e "$d" ]] || return 0
  case "$d" in
    / | "$HOME" | "$REPO_ROOT" | "$CACHE_ROOT" | "$CACHE_ROOT/kafka" | "$DIST_DIR" | "$RUN_DIR")
      die "refusing to delete $d" ;;
  esac
  if [[ ! -f "$d/$DATA_MARKER" && -n "$(ls -A -- "$d")" ]]; then
    die "refusing to delete $d: not a kafka.sh data dir (no $DATA_MARKER in it)"
  fi
  rm -rf -- "$d"
}

write_server_properties() {
  cat >"$SERVER_PROPS" <<EOF
# Generated by deploy/local/kafka/kafka.sh on every start; edits are overwritten.
# Single-node KRaft: this process is broker and controller (static quorum).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT

listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER

log.dirs=$LOG_DIRS

# Topics are created explicitly by the application.
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Internal topics on a single node: RF 1, one partition (fast first use).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# No 3 s wait before the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0

# Small segments, Kafka's default time retention (7 days) for topics without
# their own retention.ms; compaction enabled with a small dedupe buffer.
log.segment.bytes=16777216
log.retention.hours=168
log.retention.check.interval.ms=60000
log.cleaner.enable=true
log.cleaner.dedupe.buffer.size=33554432

# Sized for a laptop / 2-core CI box.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
EOF
}

format_storage() {
  [[ -f "$LOG_DIRS/meta.properties" ]] && return 0
  local cluster_id
  # A Kafka cluster id is a base64url-encoded (no padding) random 16-byte UUID; one in
  # 64 starts with "-", so it is passed as --cluster-id=ID, never as an argument of its own.
  cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  log "formatting $LOG_DIRS (cluster id $cluster_id)"
  if ! "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIBS_DIR/*" \
      kafka.tools.StorageTool format --cluster-id="$cluster_id" --config "$SERVER_PROPS" \
      >>"$SERVER_LOG" 2>&1 9>&-; then
    show_log_tail
    die "formatting the storage in $LOG_DIRS failed"
  fi
}

# ---------------------------------------------------------------- commands

cmd_start() {
  validate_env
  cmd_fetch
  lock_port

  local pid
  pid="$(broker_pid)"
  if [[ -n "$pid" && "${KAFKA_FRESH:-0}" == 1 ]]; then
    log "KAFKA_FRESH=1: stopping the running broker first"
    stop_broker "$pid"
    pid=""
  fi
  if [[ -n "$pid" ]]; then
    log "kafka already running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
    echo "$pid" >"$PID_FILE"  # (re)write it in case it was lost
    SERVER_LOG="$(broker_data_dir "$pid")/server.log"
    local rc=0
    wait_ready "$pid" || rc=$?
    (( rc == 0 )) || die "kafka pid $pid on port $KAFKA_PORT is running but not answering (see $SERVER_LOG)"
    return 0
  fi

  local owner
  owner="$(port_owner "$KAFKA_PORT")"
  [[ -z "$owner" ]] || die "port $KAFKA_PORT is taken by $owner; stop it or set KAFKA_PORT"
  owner="$(port_owner "$KAFKA_CONTROLLER_PORT")"
  [[ -z "$owner" ]] || die "controller port $KAFKA_CONTROLLER_PORT is taken by $owner; stop it or set KAFKA_CONTROLLER_PORT (or KAFKA_PORT)"

  if [[ "${KAFKA_FRESH:-0}" == 1 ]]; then
    log "KAFKA_FRESH=1: deleting $DATA_DIR"
    remove_data_dir
  fi
  mkdir -p "$DATA_DIR" "$LOG_DIRS"
  [[ -f "$DATA_DIR/$DATA_MARKER" ]] || echo "data dir of deploy/local/kafka/kafka.sh; safe to delete when the broker is stopped" >"$DATA_DIR/$DATA_MARKER"
  [[ -f "$SERVER_LOG" ]] && mv -f -- "$SERVER_LOG" "$SERVER_LOG.1"
  printf '=== kafka.sh start %s: port %s, controller port %s\n' "$(date -Is)" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" >"$SERVER_LOG"

  write_server_properties
  format_storage

  log "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, data $DATA_DIR)"
  # shellcheck disable=SC2086  # KAFKA_HEAP / KAFKA_OPTS are lists of flags
  setsid "$JAVA" $KAFKA_HEAP \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$DATA_DIR" \
    $KAFKA_OPTS "$(marker)" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_PROPS" \
    </dev/null >>"$SERVER_LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local t0=$SECONDS rc=0
  wait_ready "$pid" || rc=$?
  case "$rc" in
    0) log "kafka ready on 127.0.0.1:$KAFKA_PORT after $((SECONDS - t0))s (pid $pid, log $SERVER_LOG)" ;;
    2) rm -f -- "$PID_FILE"; show_log_tail; die "kafka exited during startup" ;;
    *) show_log_tail; log "kafka not ready after ${KAFKA_START_TIMEOUT}s; stopping it"
       stop_pid "$pid"; rm -f -- "$PID_FILE"; die "kafka did not become ready on 127.0.0.1:$KAFKA_PORT" ;;
  esac
}

# Stops our broker on $KAFKA_PORT (caller holds the port lock).
stop_broker() {
  local pid="$1"
  if [[ -z "$pid" ]]; then
    rm -f -- "$PID_FILE"
    log "kafka on port $KAFKA_PORT is not running"
    return 0
  fi
  log "stopping kafka on port $KAFKA_PORT (pid $pid)"
  stop_pid "$pid"
  rm -f -- "$PID_FILE"
  log "stopped"
}

cmd_stop() {
  validate_env
  lock_port
  stop_broker "$(broker_pid)"
}

cmd_status() {
  validate_env
  local pid
  pid="$(broker_pid)"
  if [[ -z "$pid" ]]; then
    echo "kafka on 127.0.0.1:$KAFKA_PORT: not running"
    return 1
  fi
  echo "kafka on 127.0.0.1:$KAFKA_PORT: running (pid $pid, data $(broker_data_dir "$pid"))"
}

cmd_reset() {
  validate_env
  lock_port
  local pid
  pid="$(broker_pid)"
  # Without an explicit KAFKA_DATA_DIR, wipe the dir the running broker uses.
  if [[ -n "$pid" && -z "${KAFKA_DATA_DIR:-}" ]]; then DATA_DIR="$(broker_data_dir "$pid")"; fi
  stop_broker "$pid"
  log "deleting $DATA_DIR"
  remove_data_dir
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  case "${1:-}" in
    fetch) validate_env; cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
