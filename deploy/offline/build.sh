#!/usr/bin/env bash
# Build the offline image set: everything the compose stack runs but Grafana,
# from Debian packages, PyPI and Maven Central, for Docker hosts that cannot
# pull from a registry (deploy/docker-compose.offline.yml names these images).
#
#   tradingbot-offline/debian:bookworm        debootstrap --variant=minbase bookworm, docker import
#   tradingbot-offline/python:3.11            Debian's python3.11 (the base of deploy/Dockerfile)
#   tradingbot-offline/kafka:4.1.1            Debian's OpenJDK 17 JRE + the jars of kafka.sh fetch
#   tradingbot-offline/timescaledb:2.19.3-pg17  trixie's postgresql-17-timescaledb (timescaledb.sh fetch)
#   tradingbot-offline/prometheus:2.42.0      Debian's prometheus
#   tradingbot-offline/alertmanager:0.25.0    Debian's prometheus-alertmanager
#
# The services' image itself is built by `docker compose build` from
# deploy/Dockerfile on tradingbot-offline/python:3.11. Each image is built
# with the legacy builder (DOCKER_BUILDKIT=0; no buildx needed) and its layers
# are cached by the engine: a second run takes seconds. The host's extra CA
# certificates (/usr/local/share/ca-certificates) go into the Python base,
# for hosts whose way out to PyPI is a TLS-intercepting proxy.
#
# Needs root (debootstrap) and DOCKER_HOST pointing at the engine
# (deploy/local/docker/docker.sh start). Mirror: DEBIAN_MIRROR [http://deb.debian.org/debian].
set -euo pipefail
shopt -s inherit_errexit

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_ROOT="$(realpath -m -- "${TRADINGBOT_CACHE:-$REPO_ROOT/.cache}")"
readonly SCRIPT_DIR REPO_ROOT CACHE_ROOT
readonly WORK="$CACHE_ROOT/docker/offline"
readonly MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly BASE_IMAGE=tradingbot-offline/debian:bookworm
readonly BASE_RECIPE=1 # bump when the base image's recipe changes
export DOCKER_BUILDKIT=0

log() { printf 'offline/build.sh: %s\n' "$*" >&2; }
die() { printf 'offline/build.sh: error: %s\n' "$*" >&2; exit 1; }

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

# build TAG CONTEXT [docker build flags...]: quiet on success, the log's tail on failure.
build() {
  local tag="$1" context="$2" t0=$SECONDS
  shift 2
  mkdir -p "$WORK"
  if ! docker build --label "tradingbot.offline=1" -t "$tag" "$@" "$context" >"$WORK/build-${tag//[\/:]/_}.log" 2>&1; then
    tail -n 30 "$WORK/build-${tag//[\/:]/_}.log" >&2
    die "building $tag failed (see $WORK/build-${tag//[\/:]/_}.log)"
  fi
  log "$tag ($((SECONDS - t0)) s)"
}

base_image() {
  local want="bookworm-minbase-$BASE_RECIPE"
  if has_image "$BASE_IMAGE" &&
    [[ "$(docker image inspect -f '{{index .Config.Labels "tradingbot.recipe"}}' "$BASE_IMAGE")" == "$want" ]]; then
    return 0
  fi
  (( EUID == 0 )) || die "debootstrap needs root"
  command -v debootstrap >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null ||
    die "debootstrap not found (apt-get install debootstrap)"
  local dir="$WORK/rootfs-bookworm" t0=$SECONDS
  rm -rf -- "$dir"
  mkdir -p "$dir"
  log "debootstrap --variant=minbase bookworm (about a minute; log $WORK/debootstrap.log) ..."
  unshare --mount --propagation private -- debootstrap --variant=minbase bookworm "$dir" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf -- "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -c . |
    docker import --change "LABEL tradingbot.recipe=$want" --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf -- "$dir"
  log "$BASE_IMAGE ($((SECONDS - t0)) s)"
}

python_image() {
  local ctx="$WORK/context-python"
  rm -rf -- "$ctx"
  mkdir -p "$ctx/certs"
  cp "$SCRIPT_DIR/python/Dockerfile" "$ctx/"
  local crt
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -f "$crt" ]] && cp -- "$crt" "$ctx/certs/"
  done
  build tradingbot-offline/python:3.11 "$ctx"
}

kafka_image() {
  bash "$REPO_ROOT/deploy/local/kafka/kafka.sh" fetch >&2
  local libs="$CACHE_ROOT/kafka/4.1.1/libs" ctx="$WORK/context-kafka"
  [[ -f "$libs/kafka_2.13-4.1.1.jar" ]] || die "no Kafka jars in $libs after kafka.sh fetch"
  rm -rf -- "$ctx"
  mkdir -p "$ctx"
  cp -p "$SCRIPT_DIR"/kafka/{Dockerfile,entrypoint.sh,kafka-configs.sh,log4j2.properties} "$ctx/"
  cp -rp "$libs" "$ctx/libs"
  build tradingbot-offline/kafka:4.1.1 "$ctx"
}

timescaledb_image() {
  bash "$REPO_ROOT/deploy/local/timescaledb/timescaledb.sh" fetch >&2
  local rootfs="$CACHE_ROOT/timescaledb/rootfs-trixie-pg17" fp
  fp="$(cat "$rootfs/.tradingbot-rootfs")"
  local rootfs_image="tradingbot-offline/timescaledb-rootfs:$fp"
  if ! has_image "$rootfs_image"; then
    tar -C "$rootfs" --numeric-owner --exclude=./dev/* --exclude=./srv/tradingbot -c . |
      docker import - "$rootfs_image" >/dev/null
  fi
  build tradingbot-offline/timescaledb:2.19.3-pg17 "$SCRIPT_DIR/timescaledb" --build-arg "ROOTFS_IMAGE=$rootfs_image"
}

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "no Docker Engine answers at ${DOCKER_HOST:-the default socket} (deploy/local/docker/docker.sh start)"
base_image
python_image
kafka_image
timescaledb_image
build tradingbot-offline/prometheus:2.42.0 "$SCRIPT_DIR/prometheus"
build tradingbot-offline/alertmanager:0.25.0 "$SCRIPT_DIR/alertmanager"
