#!/usr/bin/env bash
# Single-node OpenSearch 2.19.6 for tests, on 127.0.0.1 only, plain HTTP, no security plugin.
#
#   infra/opensearch.sh start|stop|status|url
#
# Where it comes from: Maven Central's integ-test distribution zip
# (org.opensearch.distribution.integ-test-zip:opensearch:2.19.6:zip), fetched with mvn.
# That zip carries no bundled JDK and only the transport-netty4 module, so this script adds the
# modules the official images carry and the archive may use (lang-painless, analysis-common,
# mapper-extras, reindex) from their Maven Central jars. Without them, custom analyzers with
# `lowercase`/`asciifolding`/`html_strip`/`uax_url_email`, scripts, _update_by_query and
# _delete_by_query would fail here while working in production.
#
# Caches (nothing is fetched or unzipped twice):
#   downloads : $ARCHIVE_INFRA_CACHE   (default ${XDG_CACHE_HOME:-$HOME/.cache}/mail-archive)
#   install   : $ARCHIVE_INFRA_INSTALL (default /var/cache/mail-archive as root, else the download cache)
#               read-only for the service user; the config lives in the state dir.
# State (wiped at every cold start: test data is disposable):
#   $ARCHIVE_INFRA_STATE/opensearch/{config,data,logs,tmp}   (default state /tmp/mail-archive-infra)
#
# OpenSearch refuses to run as root, so as root it runs as the system user
# $ARCHIVE_TEST_SERVICE_USER (default archive-test, created if missing).
#
# Knobs (environment):
#   ARCHIVE_TEST_OPENSEARCH_PORT            HTTP port (default 9200)
#   ARCHIVE_TEST_OPENSEARCH_TRANSPORT_PORT  transport port range (default 9300-9399; single node, loopback)
#   ARCHIVE_TEST_OPENSEARCH_KEEP_DATA       1: keep the data of the previous run at start (a restart, not a fresh node)
#   ARCHIVE_TEST_OPENSEARCH_HEAP            JVM heap, -Xms = -Xmx (default 512m). Each 256m more costs that
#                                           much resident memory; 512m holds the test indices comfortably.
#   ARCHIVE_TEST_OPENSEARCH_START_TIMEOUT   seconds to wait for yellow health (default 180)
#   ARCHIVE_TEST_OPENSEARCH_JAVA_HOME       JDK to run it (default: first Java 11..21 found; 2.19 needs the
#                                           Security Manager, which Java 24+ removed, so not Temurin 25)
#   ARCHIVE_TEST_OPENSEARCH_MODULES         modules to add (default "lang-painless analysis-common mapper-extras reindex")
set -euo pipefail

OS_VERSION=2.19.6
PORT="${ARCHIVE_TEST_OPENSEARCH_PORT:-9200}"
TRANSPORT_PORT="${ARCHIVE_TEST_OPENSEARCH_TRANSPORT_PORT:-9300-9399}"
HEAP="${ARCHIVE_TEST_OPENSEARCH_HEAP:-512m}"
START_TIMEOUT="${ARCHIVE_TEST_OPENSEARCH_START_TIMEOUT:-180}"
MODULES="${ARCHIVE_TEST_OPENSEARCH_MODULES:-lang-painless analysis-common mapper-extras reindex}"
SERVICE_USER="${ARCHIVE_TEST_SERVICE_USER:-archive-test}"

# HOME may be unset in a bare CI environment: fall back to the passwd entry.
USER_HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${ARCHIVE_INFRA_CACHE:-${XDG_CACHE_HOME:-$USER_HOME/.cache}/mail-archive}"
if [[ $EUID -eq 0 ]]; then
  INSTALL_ROOT="${ARCHIVE_INFRA_INSTALL:-/var/cache/mail-archive}"
else
  INSTALL_ROOT="${ARCHIVE_INFRA_INSTALL:-$CACHE}"
fi
STATE="${ARCHIVE_INFRA_STATE:-/tmp/mail-archive-infra}"
OS_STATE="$STATE/opensearch"
PIDFILE="$STATE/opensearch.pid"
LOCKFILE="$STATE/opensearch.lock"
HOME_DIR="$INSTALL_ROOT/opensearch-$OS_VERSION"
URL="http://127.0.0.1:$PORT"
CLUSTER_NAME=mail-archive-test

log() { printf '[opensearch] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- process bookkeeping -------------------------------------------------------------------

# Prints the pid of our running node, or nothing. A pid is ours only if it is alive and is an
# OpenSearch JVM using our config dir, so a stale pid file reused by another process is ignored.
running_pid() {
  [[ -f $PIDFILE ]] || return 0
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dopensearch.path.conf=$OS_STATE/config"; then
    echo "$pid"
  fi
}

healthy() {
  curl -fsS --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

show_log_tail() {
  local f
  for f in "$OS_STATE/logs/console.log" "$OS_STATE/logs/$CLUSTER_NAME.log"; do
    if [[ -s $f ]]; then
      log "---- last lines of $f ----"
      tail -n 40 "$f" >&2 || true
    fi
  done
}

# --- Java ----------------------------------------------------------------------------------

java_major() {
  "$1/bin/java" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1") ? v[2] : v[1]; exit}'
}

find_java_home() {
  if [[ -n ${ARCHIVE_TEST_OPENSEARCH_JAVA_HOME:-} ]]; then
    echo "$ARCHIVE_TEST_OPENSEARCH_JAVA_HOME"
    return
  fi
  local candidates=() c m
  [[ -n ${JAVA_HOME:-} ]] && candidates+=("$JAVA_HOME")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in /usr/lib/jvm/*17* /usr/lib/jvm/*21* /usr/lib/jvm/*; do candidates+=("$c"); done
  for c in "${candidates[@]}"; do
    [[ -x $c/bin/java ]] || continue
    m="$(java_major "$c" || true)"
    if [[ $m =~ ^[0-9]+$ ]] && ((m >= 11 && m <= 21)); then
      echo "$c"
      return
    fi
  done
  die "no Java 11..21 found (OpenSearch $OS_VERSION needs one; Debian: apt-get install openjdk-17-jre-headless)"
}

# --- download, extract, add modules (all cached) -------------------------------------------

mvn_quiet() {
  # -B: no colour/progress; output kept for the error case only.
  local out
  if ! out="$(mvn -B -q "$@" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 30 >&2
    return 1
  fi
}

fetch_zip() {
  local zip="$CACHE/opensearch-$OS_VERSION.zip"
  if [[ ! -s $zip ]]; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found (Debian: apt-get install maven)"
    log "downloading OpenSearch $OS_VERSION integ-test zip from Maven Central (mvn, ~56 MB)"
    mkdir -p "$CACHE"
    (cd "$CACHE" && mvn_quiet dependency:copy \
      "-Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:$OS_VERSION:zip" \
      "-DoutputDirectory=$CACHE") || die "mvn could not fetch the OpenSearch zip"
  fi
  echo "$zip"
}

# module name -> Maven artifact id, plugin class, extended plugins
module_artifact() {
  case "$1" in
    lang-painless) echo lang-painless ;;
    analysis-common) echo analysis-common ;;
    mapper-extras) echo mapper-extras-client ;;
    reindex) echo reindex-client ;;
    *) die "unknown OpenSearch module '$1' (known: lang-painless analysis-common mapper-extras reindex)" ;;
  esac
}
module_class() {
  case "$1" in
    lang-painless) echo org.opensearch.painless.PainlessPlugin ;;
    analysis-common) echo org.opensearch.analysis.common.CommonAnalysisPlugin ;;
    mapper-extras) echo org.opensearch.index.mapper.MapperExtrasPlugin ;;
    reindex) echo org.opensearch.index.reindex.ReindexPlugin ;;
  esac
}
module_extends() {
  case "$1" in
    analysis-common) echo lang-painless ;;
    *) echo "" ;;
  esac
}
module_policy() {
  # The grants the upstream modules ship in their plugin-security.policy.
  case "$1" in
    lang-painless)
      cat <<'EOF'
grant {
  // generates runtime classes for compiled scripts
  permission java.lang.RuntimePermission "createClassLoader";
  // finds the class loader to load allow-listed classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
EOF
      ;;
    reindex)
      cat <<'EOF'
grant {
  // reindex-from-remote opens sockets through the REST client
  permission java.net.SocketPermission "*", "connect";
};
grant codeBase "${codebase.opensearch-rest-client}" {
  permission java.net.NetPermission "getProxySelector";
};
grant codeBase "${codebase.httpasyncclient}" {
  permission java.net.NetPermission "getProxySelector";
};
EOF
      ;;
  esac
}

# Downloads one module's jar and its runtime dependencies into the cache.
fetch_module() {
  local name="$1" dir="$CACHE/opensearch-$OS_VERSION-modules/$1" artifact
  if [[ -f $dir/.complete ]]; then
    echo "$dir"
    return
  fi
  artifact="$(module_artifact "$name")"
  log "downloading module $name ($artifact $OS_VERSION) and its dependencies from Maven Central"
  rm -rf "$dir" "$dir.pom"
  mkdir -p "$dir" "$dir.pom"
  cat >"$dir.pom/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.mail-archive</groupId>
  <artifactId>opensearch-module-$name</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>$artifact</artifactId>
      <version>$OS_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  (cd "$dir.pom" && mvn_quiet dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$dir") ||
    die "mvn could not fetch module $name"
  rm -rf "$dir.pom"
  touch "$dir/.complete"
  echo "$dir"
}

# Builds modules/<name> in a staged install: jars minus those already in lib/ (a class on both
# class paths is "jar hell" and stops start-up), descriptor and security policy.
install_module() {
  local home="$1" name="$2" src dst jar base stem
  src="$(fetch_module "$name")"
  dst="$home/modules/$name"
  mkdir -p "$dst"
  for jar in "$src"/*.jar; do
    base="$(basename "$jar")"
    stem="${base%-[0-9]*.jar}"
    if compgen -G "$home/lib/$stem-[0-9]*.jar" >/dev/null; then
      continue
    fi
    cp "$jar" "$dst/"
  done
  cat >"$dst/plugin-descriptor.properties" <<EOF
description=$name module (assembled from Maven Central by infra/opensearch.sh)
version=$OS_VERSION
name=$name
classname=$(module_class "$name")
java.version=11
opensearch.version=$OS_VERSION
custom.foldername=
extended.plugins=$(module_extends "$name")
has.native.controller=false
EOF
  module_policy "$name" >"$dst/plugin-security.policy"
  [[ -s $dst/plugin-security.policy ]] || rm -f "$dst/plugin-security.policy"
}

ensure_install() {
  local stamp="$HOME_DIR/.mail-archive-install" want
  want="opensearch=$OS_VERSION modules=$MODULES"
  if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  local zip staging
  zip="$(fetch_zip)"
  mkdir -p "$INSTALL_ROOT"
  staging="$(mktemp -d "$INSTALL_ROOT/.staging.XXXXXX")"
  log "extracting $zip"
  if ! unzip -q "$zip" -d "$staging"; then
    rm -rf "$staging"
    rm -f "$zip" # most likely a truncated download: fetch it again next time
    die "could not unzip $zip (removed it; run again to re-download)"
  fi
  local m
  for m in $MODULES; do install_module "$staging/opensearch-$OS_VERSION" "$m"; done
  echo "$want" >"$staging/opensearch-$OS_VERSION/.mail-archive-install"
  chmod -R a+rX "$staging"
  rm -rf "$HOME_DIR"
  mv "$staging/opensearch-$OS_VERSION" "$HOME_DIR"
  rm -rf "$staging"
  log "installed in $HOME_DIR (modules: $MODULES)"
}

# --- configuration -------------------------------------------------------------------------

ensure_user() {
  [[ $EUID -eq 0 ]] || return 0
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    log "creating system user $SERVICE_USER"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
}

write_config() {
  local conf="$OS_STATE/config"
  # ARCHIVE_TEST_OPENSEARCH_KEEP_DATA=1 keeps the data of the previous run, for
  # tests that stop the node and start it again (resilience), like a real restart.
  if [[ ${ARCHIVE_TEST_OPENSEARCH_KEEP_DATA:-0} == 1 ]]; then
    rm -rf "$conf" "$OS_STATE/tmp"
  else
    rm -rf "$OS_STATE"
  fi
  mkdir -p "$conf/jvm.options.d" "$OS_STATE/data" "$OS_STATE/logs" "$OS_STATE/tmp"
  cp "$HOME_DIR/config/log4j2.properties" "$conf/"
  cat >"$conf/opensearch.yml" <<EOF
# Written by infra/opensearch.sh at each cold start; edits here are lost.
cluster.name: $CLUSTER_NAME
node.name: test-node-1
network.host: 127.0.0.1
http.port: $PORT
transport.port: $TRANSPORT_PORT
discovery.type: single-node
path.data: $OS_STATE/data
path.logs: $OS_STATE/logs
# A busy or small test disk must not flip indices to read-only (flood stage) or leave
# shards unassigned (low/high watermarks).
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  # Our own jvm.options (the zip's writes GC logs and heap dumps relative to the working dir).
  cat >"$conf/jvm.options" <<EOF
-Xms$HEAP
-Xmx$HEAP
11-:-XX:+UseG1GC
11-:-XX:G1ReservePercent=25
11-:-XX:InitiatingHeapOccupancyPercent=30
-Djava.io.tmpdir=\${OPENSEARCH_TMPDIR}
-XX:-HeapDumpOnOutOfMemoryError
-XX:ErrorFile=$OS_STATE/logs/hs_err_pid%p.log
9-:-Xlog:gc*,gc+age=trace,safepoint:file=$OS_STATE/logs/gc.log:utctime,pid,tags:filecount=2,filesize=16m
18-:-Djava.security.manager=allow
20-:--add-modules=jdk.incubator.vector
-Djava.util.concurrent.ForkJoinPool.common.threadFactory=org.opensearch.secure_sm.SecuredForkJoinWorkerThreadFactory
EOF
  chmod 755 "$STATE"
  if [[ $EUID -eq 0 ]]; then
    chown -R "$SERVICE_USER:$SERVICE_USER" "$OS_STATE"
  fi
}

# --- commands ------------------------------------------------------------------------------

cmd_start() {
  local pid
  pid="$(running_pid)"
  if [[ -n $pid ]]; then
    if healthy; then
      log "already running (pid $pid) at $URL"
      return 0
    fi
    log "running (pid $pid) but not yet healthy; waiting"
    wait_ready "$pid"
    return 0
  fi
  if curl -fsS --max-time 3 "$URL/" >/dev/null 2>&1; then
    die "port $PORT already answers but not from this script's node; stop that server or set ARCHIVE_TEST_OPENSEARCH_PORT"
  fi

  local t0=$SECONDS java_home
  ensure_install
  java_home="$(find_java_home)"
  ensure_user
  write_config
  log "starting on $URL (heap $HEAP, java $(java_major "$java_home") at $java_home)"

  local -a as_user=()
  if [[ $EUID -eq 0 ]]; then
    # setpriv execs (no fork), so $! below is the JVM's pid once bin/opensearch execs java.
    as_user=(setpriv "--reuid=$SERVICE_USER" "--regid=$SERVICE_USER" --init-groups)
  fi
  (
    exec 9>&- # the start/stop lock must not be inherited by the long-lived JVM
    cd "$OS_STATE"
    exec setsid "${as_user[@]}" env -i \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME="$OS_STATE" LANG=C.UTF-8 \
      OPENSEARCH_JAVA_HOME="$java_home" \
      OPENSEARCH_PATH_CONF="$OS_STATE/config" \
      OPENSEARCH_TMPDIR="$OS_STATE/tmp" \
      "$HOME_DIR/bin/opensearch" </dev/null >>"$OS_STATE/logs/console.log" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid"
  log "ready in $((SECONDS - t0)) s: $(curl -fsS --max-time 5 "$URL/" | tr -d '\n ' | grep -o '"number":"[^"]*"' | head -n1)"
}

# Polls cluster health until yellow, the process dies, or the deadline passes.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail
      rm -f "$PIDFILE"
      die "OpenSearch exited during start-up (see $OS_STATE/logs)"
    fi
    # The health call itself blocks up to 1 s server-side once HTTP is up; before that,
    # connection refusals return at once, so pace those at 0.25 s.
    if healthy; then
      return 0
    fi
    sleep 0.25
  done
  show_log_tail
  die "OpenSearch did not reach yellow health within ${START_TIMEOUT}s (left running as pid $pid; 'infra/opensearch.sh stop' to end it)"
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
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "still alive after 60 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -z $pid ]]; then
    echo "opensearch: stopped"
    return 3
  fi
  if healthy; then
    echo "opensearch: running (pid $pid) at $URL"
    return 0
  fi
  echo "opensearch: process running (pid $pid) but not healthy at $URL"
  return 1
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
    start | stop)
      mkdir -p "$STATE"
      chmod 755 "$STATE"
      # One start/stop at a time: a second concurrent 'start' waits, then finds the node running.
      exec 9>"$LOCKFILE"
      flock 9
      "cmd_$cmd"
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
