#!/usr/bin/env bash
# S3 endpoint for tests: moto in server mode on 127.0.0.1, in memory, with versioning and
# Object Lock (retention, legal holds, default bucket retention).
#
#   infra/s3.sh start|stop|status
#
# Any access key and secret are accepted (tests use test/test, region us-east-1). Everything is
# lost when it stops: each cold start is an empty S3.
#
# Knobs (environment):
#   ARCHIVE_TEST_S3_PORT           port (default 4566)
#   ARCHIVE_TEST_S3_START_TIMEOUT  seconds to wait for it to answer (default 30)
#   ARCHIVE_TEST_PYTHON            a python that can `import moto.server` (default: python3 on PATH,
#                                  then the pyenv and Debian pythons)
#   ARCHIVE_INFRA_STATE            state dir (default /tmp/mail-archive-infra): pid file, log
set -euo pipefail

PORT="${ARCHIVE_TEST_S3_PORT:-4566}"
START_TIMEOUT="${ARCHIVE_TEST_S3_START_TIMEOUT:-30}"
STATE="${ARCHIVE_INFRA_STATE:-/tmp/mail-archive-infra}"
PIDFILE="$STATE/s3.pid"
LOCKFILE="$STATE/s3.lock"
LOGFILE="$STATE/s3/moto.log"
URL="http://127.0.0.1:$PORT"

log() { printf '[s3] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Our moto is the live pid in the pid file whose command line is moto.server on our port.
running_pid() {
  [[ -f $PIDFILE ]] || return 0
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "moto.server .*-p $PORT"; then
    echo "$pid"
  fi
}

# Any HTTP answer counts (moto answers ListBuckets on /); curl's 000 means nothing listens.
answers() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$URL/" 2>/dev/null || true)"
  [[ $code != 000 && -n $code ]]
}

find_python() {
  local c real
  local -a candidates=()
  [[ -n ${ARCHIVE_TEST_PYTHON:-} ]] && candidates+=("$ARCHIVE_TEST_PYTHON")
  candidates+=(python3)
  for c in "${HOME:-/root}"/.pyenv/versions/*/bin/python3 /root/.pyenv/versions/*/bin/python3 /usr/bin/python3; do
    candidates+=("$c")
  done
  for c in "${candidates[@]}"; do
    command -v "$c" >/dev/null 2>&1 || continue
    # sys.executable is the real interpreter behind a pyenv shim, so the pid we record is moto's.
    if real="$("$c" -c 'import moto.server, sys; print(sys.executable)' 2>/dev/null)"; then
      echo "$real"
      return
    fi
  done
  die "no python with the 'moto' package found (it is not in Debian; set ARCHIVE_TEST_PYTHON to one that has it)"
}

cmd_start() {
  local pid
  pid="$(running_pid)"
  if [[ -n $pid ]]; then
    if answers; then
      log "already running (pid $pid) at $URL"
      return 0
    fi
    wait_ready "$pid"
    return 0
  fi
  if answers; then
    die "port $PORT already answers but not from this script's moto; stop that server or set ARCHIVE_TEST_S3_PORT"
  fi
  local t0=$SECONDS py
  py="$(find_python)"
  mkdir -p "$(dirname "$LOGFILE")"
  : >"$LOGFILE"
  log "starting moto on $URL ($py)"
  (
    exec 9>&- # the start/stop lock must not be inherited by the server
    exec setsid "$py" -m moto.server -H 127.0.0.1 -p "$PORT" </dev/null >>"$LOGFILE" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid"
  log "ready in $((SECONDS - t0)) s"
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOGFILE" >&2 || true
      rm -f "$PIDFILE"
      die "moto exited during start-up (log: $LOGFILE)"
    fi
    if answers; then
      return 0
    fi
    sleep 0.1
  done
  tail -n 30 "$LOGFILE" >&2 || true
  die "moto did not answer on $URL within ${START_TIMEOUT}s (left running as pid $pid)"
}

cmd_stop() {
  local pid
  pid="$(running_pid)"
  if [[ -z $pid ]]; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1
  done
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -z $pid ]]; then
    echo "s3 (moto): stopped"
    return 3
  fi
  if answers; then
    echo "s3 (moto): running (pid $pid) at $URL"
    return 0
  fi
  echo "s3 (moto): process running (pid $pid) but not answering at $URL"
  return 1
}

main() {
  case "${1:-}" in
    start | stop)
      mkdir -p "$STATE"
      chmod 755 "$STATE"
      exec 9>"$LOCKFILE"
      flock 9
      "cmd_$1"
      ;;
    status) cmd_status ;;
    url) echo "$URL" ;;
    *)
      echo "usage: $0 start|stop|status|url" >&2
      exit 2
      ;;
  esac
}

main "$@"
