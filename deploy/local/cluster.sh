#!/usr/bin/env bash
# A Weft cluster on one machine, to try replication and failover: one etcd on 127.0.0.10 and three
# weftd (n1..n3, zones z1..z3) on 127.0.0.11..13, run from this checkout (after `npm ci`).
#
#   deploy/local/cluster.sh up | down | status
#
# Everything (pid files, logs, etcd's data, each node's data dir and pool file) lives in the state
# dir; `down` stops the processes and removes it. Settings (environment):
#   WEFT_CLUSTER_DIR            state dir (default /tmp/weft-local-cluster)
#   WEFT_CLUSTER_POOL_SIZE      each node's pool, a sparse file (default 4GiB)
#   WEFT_CLUSTER_ETCD_PORT      etcd client port (default 2379); WEFT_CLUSTER_ETCD_PEER_PORT (2380)
#   WEFT_CLUSTER_NBD_PORT       each node's NBD port (default 10809)
#   WEFT_CLUSTER_API_PORT       each node's control API port (default 10810)
#   WEFT_CLUSTER_METRICS_PORT   each node's metrics port (default 10811)
#   WEFT_CLUSTER_UP_TIMEOUT     seconds `up` waits for the cluster (default 60)
# Every process has an address of its own in 127.0.0.0/8 (Linux answers on all of it), so the three
# nodes share the port numbers and the defaults are weftd's own.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${WEFT_CLUSTER_DIR:-/tmp/weft-local-cluster}
POOL_SIZE=${WEFT_CLUSTER_POOL_SIZE:-4GiB}
ETCD_ADDR=127.0.0.10
ETCD_PORT=${WEFT_CLUSTER_ETCD_PORT:-2379}
ETCD_PEER_PORT=${WEFT_CLUSTER_ETCD_PEER_PORT:-2380}
NBD_PORT=${WEFT_CLUSTER_NBD_PORT:-10809}
API_PORT=${WEFT_CLUSTER_API_PORT:-10810}
METRICS_PORT=${WEFT_CLUSTER_METRICS_PORT:-10811}
UP_TIMEOUT=${WEFT_CLUSTER_UP_TIMEOUT:-60}
NODES=(n1 n2 n3)
# Seconds between SIGTERM and SIGKILL: weftd finishes in-flight requests and flushes on SIGTERM.
STOP_GRACE=10
# Marks a state dir as this script's, so that `down` never removes a directory it did not make.
MARKER=.weft-local-cluster

addr() { echo "127.0.0.1${1#n}"; } # n1 -> 127.0.0.11
weft() { "$REPO/bin/weft" --endpoint "$(addr n1):$API_PORT" "$@"; }
say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# The pid in DIR/NAME.pid if that process runs and is ours (its command line names the state dir:
# after a reboot the pid may belong to someone else).
running_pid() {
  local file=$DIR/$1.pid pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR/" && echo "$pid"
}

# Starts a process in the background, its output in DIR/NAME.log and its pid in DIR/NAME.pid.
launch() {
  local name=$1
  shift
  "$@" </dev/null >"$DIR/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

# Stops the named processes of the cluster: SIGTERM, SIGKILL after STOP_GRACE seconds; returns
# once each is gone.
stop() {
  local name pid pids=() alive ticks=0
  for name in "$@"; do
    if pid=$(running_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  while ((${#pids[@]} > 0)); do
    if ((ticks == STOP_GRACE * 10)); then
      say "still running after ${STOP_GRACE}s, killing: ${pids[*]}"
      kill -KILL "${pids[@]}" 2>/dev/null || true
    fi
    sleep 0.1
    ticks=$((ticks + 1))
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    pids=("${alive[@]}")
  done
}

# The nodes stop first, so that they leave the cluster while etcd still answers.
stop_all() {
  stop "${NODES[@]}"
  stop etcd
}

# How many of n1..n3 the cluster lists as up, with the zone z1..z3 each was given.
nodes_up() {
  local json
  json=$(weft --output json node list 2>/dev/null) || { echo 0; return; }
  node -e '
    const up = JSON.parse(process.argv[1]).filter((n) => n.state === "up" && n.zone === "z" + n.id.slice(1));
    console.log(up.length);' "$json"
}

# The last lines of every log, for the user to see why `up` failed.
show_logs() {
  local log
  for log in "$DIR"/*.log; do
    [[ -f $log ]] || continue
    echo "--- $log (last lines)" >&2
    tail -n 5 "$log" >&2
  done
}

check_prerequisites() {
  command -v etcd >/dev/null || die "etcd is not installed: apt-get install etcd-server (Debian/Ubuntu)"
  command -v node >/dev/null || die "node is not on PATH: weftd needs Node.js 20"
  [[ -f $REPO/dist/fabric/weftd.js ]] || die "$REPO/dist is missing: run \`npm ci\` in $REPO first (it compiles weftd)"
}

# A state dir left by a cluster that is no longer running (a failed `up`, a reboot) is removed; one
# that something runs in, or a non-empty one that this script did not make, is refused.
prepare_dir() {
  local name
  for name in etcd "${NODES[@]}"; do
    running_pid "$name" >/dev/null && die "already up (state in $DIR); \`$0 status\` shows it, \`$0 down\` stops it"
  done
  if [[ -e $DIR && -n $(ls -A "$DIR") ]]; then
    [[ -f $DIR/$MARKER ]] || die "$DIR exists and is not a local cluster's state dir; set WEFT_CLUSTER_DIR to another path"
    say "removing the state of a cluster that no longer runs: $DIR"
    rm -rf "$DIR"
  fi
  mkdir -p "$DIR"
  touch "$DIR/$MARKER"
}

start_etcd() {
  local client=http://$ETCD_ADDR:$ETCD_PORT peer=http://$ETCD_ADDR:$ETCD_PEER_PORT
  launch etcd etcd --name weft-etcd --data-dir "$DIR/etcd" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "weft-etcd=$peer" \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    --logger zap --log-level warn
}

start_node() {
  local id=$1
  mkdir -p "$DIR/$id"
  launch "$id" "$REPO/bin/weftd" --node-id "$id" --zone "z${id#n}" \
    --listen "$(addr "$id")" --advertise "$(addr "$id")" \
    --nbd-port "$NBD_PORT" --api-port "$API_PORT" --metrics-port "$METRICS_PORT" \
    --data-dir "$DIR/$id" --pool "default:$DIR/$id:$POOL_SIZE" \
    --store "etcd://$ETCD_ADDR:$ETCD_PORT"
}

# Waits until all three nodes are listed up; fails early when a process has exited.
wait_until_up() {
  local name deadline=$((SECONDS + UP_TIMEOUT))
  until (($(nodes_up) == ${#NODES[@]})); do
    for name in etcd "${NODES[@]}"; do
      running_pid "$name" >/dev/null || die "$name exited; its log: $DIR/$name.log"
    done
    ((SECONDS < deadline)) || die "the nodes were not all up within ${UP_TIMEOUT}s"
    sleep 0.5
  done
}

print_usage() {
  local id
  echo "Weft cluster up: etcd at $ETCD_ADDR:$ETCD_PORT; state and logs in $DIR"
  for id in "${NODES[@]}"; do
    echo "  $id  zone z${id#n}  API $(addr "$id"):$API_PORT  NBD nbd://$(addr "$id"):$NBD_PORT/VOLUME  metrics http://$(addr "$id"):$METRICS_PORT/metrics"
  done
  cat <<EOF
Try it:
  export WEFT_ENDPOINT=$(addr n1):$API_PORT
  $REPO/bin/weft node list
  $REPO/bin/weft volume create v --size 1G --replicas 3
  nbdinfo nbd://$(addr n1):$NBD_PORT/v
Stop it (and delete its data): $0 down
EOF
}

up() {
  check_prerequisites
  prepare_dir
  # A failed start stops what it started; the logs stay in DIR until the next `up` or `down`.
  trap 'show_logs; stop_all; say "up failed; logs in $DIR"' EXIT
  start_etcd
  local id
  for id in "${NODES[@]}"; do start_node "$id"; done
  wait_until_up
  trap - EXIT
  print_usage
}

down() {
  if [[ ! -e $DIR ]]; then
    say "not up (no $DIR)"
    return
  fi
  [[ -f $DIR/$MARKER ]] || die "$DIR is not a local cluster's state dir; not touching it"
  stop_all
  rm -rf "$DIR"
  echo "Weft cluster down; $DIR removed"
}

status() {
  local name pid any=0
  for name in etcd "${NODES[@]}"; do
    if pid=$(running_pid "$name"); then
      echo "$name  running  pid $pid  log $DIR/$name.log"
      any=1
    else
      echo "$name  stopped"
    fi
  done
  ((any)) || return 1
  if running_pid n1 >/dev/null; then weft node list; fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
