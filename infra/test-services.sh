#!/usr/bin/env bash
# The three services the contract, integration and end-to-end tests need.
#
#   infra/test-services.sh up      start OpenSearch, the S3 endpoint (moto) and Redis; idempotent
#   infra/test-services.sh down    stop OpenSearch and moto (Redis belongs to the machine: left alone)
#   infra/test-services.sh status  one line per service; exit 0 only if all three are up
#   infra/test-services.sh env     `export` lines for the tests:  eval "$(bash infra/test-services.sh env)"
#
# Ports follow ARCHIVE_TEST_OPENSEARCH_PORT, ARCHIVE_TEST_S3_PORT, ARCHIVE_TEST_REDIS_PORT
# (defaults 9200, 4566, 6379). See infra/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

cmd_up() {
  local t0 os_pid rc=0
  t0=$(now_ms)
  # OpenSearch takes the longest (JVM start, ~10-20 s warm), so it starts in the background
  # while the others come up.
  bash "$HERE/opensearch.sh" start &
  os_pid=$!
  bash "$HERE/redis.sh" start || rc=1
  bash "$HERE/s3.sh" start || rc=1
  wait "$os_pid" || rc=1
  if ((rc != 0)); then
    echo "[test-services] ERROR: not all services came up (see above)" >&2
    return 1
  fi
  echo "[test-services] up in $(( ($(now_ms) - t0) / 1000 )).$(( ($(now_ms) - t0) % 1000 / 100 )) s" >&2
}

cmd_down() {
  local rc=0
  bash "$HERE/opensearch.sh" stop || rc=1
  bash "$HERE/s3.sh" stop || rc=1
  return "$rc"
}

cmd_status() {
  local rc=0
  bash "$HERE/opensearch.sh" status || rc=1
  bash "$HERE/s3.sh" status || rc=1
  bash "$HERE/redis.sh" status || rc=1
  return "$rc"
}

cmd_env() {
  cat <<EOF
export ARCHIVE_TEST_OPENSEARCH_URL=$(bash "$HERE/opensearch.sh" url)
export ARCHIVE_TEST_S3_ENDPOINT=$(bash "$HERE/s3.sh" url)
export ARCHIVE_TEST_S3_REGION=us-east-1
export ARCHIVE_TEST_S3_ACCESS_KEY_ID=test
export ARCHIVE_TEST_S3_SECRET_ACCESS_KEY=test
export ARCHIVE_TEST_REDIS_URL=$(bash "$HERE/redis.sh" url)
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
