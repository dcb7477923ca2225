#!/bin/bash
# Start the broker as apache/kafka does: KAFKA_* variables become server
# properties (upper case -> lower case, _ -> ., __ -> _, ___ -> -), the
# storage is formatted once with CLUSTER_ID, then kafka.Kafka runs in front.
set -euo pipefail
props=/opt/kafka/config/server.properties
: >"$props"
while IFS='=' read -r name _; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key="${name#KAFKA_}"
  key="${key,,}"
  key="${key//___/-}"
  key="${key//__/@}"
  key="${key//_/.}"
  key="${key//@/_}"
  printf '%s=%s\n' "$key" "${!name}" >>"$props"
done < <(env)
grep -q '^process.roles=' "$props" || { echo "entrypoint: set KAFKA_PROCESS_ROLES (and the other KRaft settings)" >&2; exit 1; }
log_dirs="$(sed -n 's/^log\.dirs=//p' "$props")"
log_dirs="${log_dirs:-/tmp/kraft-combined-logs}"
classpath="/opt/kafka/libs/*"
log4j="-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
if [[ ! -f "${log_dirs%%,*}/meta.properties" ]]; then
  java -Xmx256m "$log4j" -cp "$classpath" kafka.tools.StorageTool format \
    --cluster-id="${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" --config "$props" --ignore-formatted
fi
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS / KAFKA_OPTS are lists of flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  "$log4j" ${KAFKA_OPTS:-} -cp "$classpath" kafka.Kafka "$props"
