#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for aebench's Slurm tests and for trying
# `aebench -m hydra/launcher=submitit_slurm` without a cluster.
#
#   scripts/slurm-cluster.sh install   apt-get install slurm-wlm slurmdbd munge mariadb-server (if missing)
#   scripts/slurm-cluster.sh start     install if needed, then start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   scripts/slurm-cluster.sh stop      stop them (by process id), keep their state
#   scripts/slurm-cluster.sh status    which daemons run; sinfo
#   scripts/slurm-cluster.sh env       print `export SLURM_CONF=...` (eval "$(scripts/slurm-cluster.sh env)")
#
# Runs as root, without systemd.  Everything it writes (configs, munge key and socket, the MariaDB
# data directory and socket, Slurm's state, spool, logs and pid files) lives under one folder:
# $AEBENCH_SLURM_DIR (default /tmp/aebench-slurm).  Its daemons listen on 127.0.0.1 ports
# $AEBENCH_SLURM_PORT .. +3 (default 16817: slurmctld, slurmd, slurmdbd, MariaDB), away from a real
# installation's defaults.  Accounting is real: slurmdbd on MariaDB, so `sacct` answers as on a cluster.
# Slurm commands find this cluster through SLURM_CONF=$AEBENCH_SLURM_DIR/etc/slurm.conf.
set -euo pipefail

DIR=${AEBENCH_SLURM_DIR:-/tmp/aebench-slurm}
PORT=${AEBENCH_SLURM_PORT:-16817}
PARTITION=${AEBENCH_SLURM_PARTITION:-debug}
CONF=$DIR/etc/slurm.conf
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # in start order

die() { echo "slurm-cluster: $*" >&2; exit 1; }
note() { echo "slurm-cluster: $*"; }

pidfile() {
  case $1 in
    munged) echo "$DIR/munge-run/munged.pid" ;;
    mariadbd) echo "$DIR/mysql/mariadbd.pid" ;;
    *) echo "$DIR/run/$1.pid" ;;
  esac
}

# The daemon's process id if it runs (checked against /proc, not only the pid file), else nothing.
running_pid() {
  local pid
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
  local comm; comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$1" ] || [ "$comm" = "$1-wlm" ] || return 1  # not a recycled pid
  echo "$pid"
}

# Running, not a zombie waiting for its parent (here PID 1) to reap it.
alive() { local state; state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]; }

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up within ${seconds}s; see the logs under $DIR/log and $DIR/mysql"
    sleep 0.2
  done
}

have_packages() {
  command -v slurmctld && command -v slurmd && command -v slurmdbd && command -v munged \
    && command -v mariadbd && command -v mariadb-install-db
} >/dev/null

install() {
  have_packages && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || die "needs ${PACKAGES[*]} (Debian/Ubuntu: run this as root to install them with apt-get)"
  note "installing ${PACKAGES[*]}"
  # The packages' scripts would start system-wide daemons (MariaDB on 3306, munged, slurmd...) where
  # an init system lets them: a policy-rc.d that says no keeps everything in our own folder.
  local policy=/usr/sbin/policy-rc.d ours="" status=0 log=${TMPDIR:-/tmp}/aebench-slurm-apt.log
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && ours=1; fi
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}"; } >"$log" 2>&1 || status=$?
  [ -z "$ours" ] || rm -f $policy
  [ $status = 0 ] || die "apt-get failed; see $log"
}

# ------------------------------------------------------------------ configuration
write_configs() {
  local host shape cpus sockets cores threads boards memory
  host=$(hostname -s)
  shape=$(slurmd -C | sed -n 1p)  # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
  field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$shape"; }
  cpus=$(field CPUs); boards=$(field Boards); sockets=$(field SocketsPerBoard)
  cores=$(field CoresPerSocket); threads=$(field ThreadsPerCore); memory=$(field RealMemory)
  memory=$((memory * 95 / 100))  # a little under the machine's: slurmd drains a node that reports less

  mkdir -p "$DIR/etc"
  cat >"$CONF" <<EOF
# Written by aebench's scripts/slurm-cluster.sh: one node ($host), tuned for tests.
ClusterName=aebench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
# cred_expire=5: a requeued job may start again after 5 s (default 120 s).
AuthInfo=socket=$DIR/munge-run/munge.socket.2,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups: processes are tracked through /proc, and scancel still kills them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Schedule every 2 s (default 60 s), so requeued and freed-up jobs start at once.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
# A cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30 s).
KillWait=5
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# slurmctld -> slurmdbd authenticates through this munge socket.
AccountingStoragePass=$DIR/munge-run/munge.socket.2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

  [ -s "$DIR/etc/db.pass" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DIR/etc/db.pass")
  (umask 077; cat >"$DIR/etc/slurmdbd.conf" <<EOF
# Written by aebench's scripts/slurm-cluster.sh (slurmdbd reads it from beside slurm.conf).
AuthType=auth/munge
AuthInfo=socket=$DIR/munge-run/munge.socket.2
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=$(cat "$DIR/etc/db.pass")
StorageLoc=slurm_acct_db
EOF
  )
}

# ------------------------------------------------------------------ the daemons
start_munged() {
  # munged insists: key, log and seed in a private folder; the socket's folder open to all.
  mkdir -p "$DIR/munge" "$DIR/munge-run"
  chown munge:munge "$DIR/munge" "$DIR/munge-run"
  chmod 700 "$DIR/munge"; chmod 755 "$DIR/munge-run"
  [ -s "$DIR/munge/munge.key" ] || runuser -u munge -- mungekey --create --keyfile="$DIR/munge/munge.key"
  runuser -u munge -- munged --socket="$DIR/munge-run/munge.socket.2" --key-file="$DIR/munge/munge.key" \
    --log-file="$DIR/munge/munged.log" --pid-file="$DIR/munge-run/munged.pid" --seed-file="$DIR/munge/munged.seed"
  wait_for 10 munged sh -c "munge -S '$DIR/munge-run/munge.socket.2' -n | unmunge -S '$DIR/munge-run/munge.socket.2'"
}

mariadb_sql() { mariadb --no-defaults --socket="$DIR/mysql/mysqld.sock" -u root -e "$1"; }

start_mariadbd() {
  mkdir -p "$DIR/mysql"
  chown mysql:mysql "$DIR/mysql"
  if [ ! -d "$DIR/mysql/data/mysql" ]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql/data" --skip-test-db \
      --auth-root-authentication-method=socket >"$DIR/mysql/install.log" 2>&1 \
      || die "mariadb-install-db failed; see $DIR/mysql/install.log"
  fi
  # Two settings slurmdbd asks for (its warning about the buffer pool size is harmless here);
  # networking only on 127.0.0.1.
  setsid mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql/data" --socket="$DIR/mysql/mysqld.sock" \
    --pid-file="$DIR/mysql/mariadbd.pid" --log-error="$DIR/mysql/mariadbd.log" \
    --bind-address=127.0.0.1 --port=$((PORT + 3)) --skip-name-resolve \
    --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
    </dev/null >/dev/null 2>&1 &
  wait_for 30 mariadbd mariadb_sql "SELECT 1"
  local pass; pass=$(cat "$DIR/etc/db.pass")
  mariadb_sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
               ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
               GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
  SLURM_CONF=$CONF slurmdbd
  # Answers once it has its tables and slurmctld can register the cluster.
  wait_for 30 slurmdbd env SLURM_CONF="$CONF" sacctmgr -n list cluster
}

start_slurmctld() {
  SLURM_CONF=$CONF slurmctld
  wait_for 30 slurmctld env SLURM_CONF="$CONF" scontrol ping
}

start_slurmd() {
  SLURM_CONF=$CONF slurmd
  wait_for 30 "the node (idle in sinfo)" node_idle
}

node_idle() { SLURM_CONF=$CONF sinfo -h -o %t | grep -qx idle; }

start() {
  install
  local daemon any_running=""
  for daemon in "${DAEMONS[@]}"; do running_pid "$daemon" >/dev/null && any_running=1; done
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/state" "$DIR/spool"
  chmod 755 "$DIR"
  [ -n "$any_running" ] || write_configs
  for daemon in "${DAEMONS[@]}"; do
    running_pid "$daemon" >/dev/null || "start_$daemon"
  done
  SLURM_CONF=$CONF sinfo -h -o %t | grep -qvx down || die "the node is down; see $DIR/log/slurmd.log"
  note "up: $(SLURM_CONF=$CONF sinfo -h -o '%P %D node(s) %c CPUs %m MB %t' | tr '\n' ' ')"
  note "use it with: export SLURM_CONF=$CONF"
}

stop() {
  local daemon pid i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    daemon=${DAEMONS[i]}
    pid=$(running_pid "$daemon") || continue  # read before killing: slurmd deletes its pid file
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      note "$daemon ($pid) still runs after 10 s; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
    note "stopped $daemon ($pid)"
  done
}

status() {
  local daemon pid down=0
  for daemon in "${DAEMONS[@]}"; do
    if pid=$(running_pid "$daemon"); then echo "$daemon: running ($pid)"; else echo "$daemon: stopped"; down=1; fi
  done
  [ $down = 0 ] && SLURM_CONF=$CONF sinfo
}

case ${1:-} in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) die "usage: $0 install|start|stop|status|env  (state in \$AEBENCH_SLURM_DIR, now $DIR)" ;;
esac
