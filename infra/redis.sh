#!/usr/bin/env bash
# Redis for tests on 127.0.0.1.
#
#   infra/redis.sh start|status|url
#
# This kind of machine starts Redis before the session, so usually `start` only checks that it
# answers PING. If it does not, it starts one in the background, in memory only (no RDB, no
# AOF), the way the machine does. There is no `stop`: the machine's Redis is shared, and tests
# isolate themselves with their own key prefixes / queue names.
#
# Knobs: ARCHIVE_TEST_REDIS_PORT (default 6379), ARCHIVE_INFRA_STATE (default
# /tmp/mail-archive-infra: working dir and log of a Redis started here).
set -euo pipefail

PORT="${ARCHIVE_TEST_REDIS_PORT:-6379}"
STATE="${ARCHIVE_INFRA_STATE:-/tmp/mail-archive-infra}"
URL="redis://127.0.0.1:$PORT"

log() { printf '[redis] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ping_ok() {
  [[ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null || true)" == PONG ]]
}

cmd_start() {
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found (Debian: apt-get install redis-tools)"
  if ping_ok; then
    log "answers PING at $URL"
    return 0
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found (Debian: apt-get install redis-server)"
  mkdir -p "$STATE/redis"
  log "not answering; starting redis-server on 127.0.0.1:$PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
    --dir "$STATE/redis" --logfile "$STATE/redis/redis.log"
  local deadline=$((SECONDS + 20))
  until ping_ok; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$STATE/redis/redis.log" >&2 || true
      die "redis did not answer PING within 20 s"
    fi
    sleep 0.1
  done
  log "answers PING at $URL"
}

cmd_status() {
  if ping_ok; then
    echo "redis: running at $URL"
    return 0
  fi
  echo "redis: not answering at $URL"
  return 3
}

case "${1:-}" in
  start) cmd_start ;;
  status) cmd_status ;;
  url) echo "$URL" ;;
  *)
    echo "usage: $0 start|status|url" >&2
    exit 2
    ;;
esac
