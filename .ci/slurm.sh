#!/usr/bin/env bash
# A throwaway one-node Slurm cluster for the cluster tests (tests/test_slurm.py), everything under one
# temporary folder: munge, MariaDB + slurmdbd (accounting, so a dead task is reported instead of awaited),
# slurmctld and slurmd on 127.0.0.1 with this machine's CPUs as slots. Installs the Debian packages when
# missing (Slurm 22.05 on Debian 12). Stop it with `.ci/slurm.sh stop`.
#   .ci/slurm.sh start   prints the slurm.conf path (export SLURM_CONF=... to use the cluster)
#   .ci/slurm.sh stop    stops the daemons the last start started, by their pid files
set -euo pipefail
STATE=/tmp/crlbench-slurm.dir  # the folder of the running cluster, for stop
PORT="${CRLBENCH_SLURM_PORT:-6917}"  # slurmctld; slurmd +1, slurmdbd +2, MariaDB +3

stop() {
  [ -f "$STATE" ] || return 0
  B="$(cat "$STATE")"
  export SLURM_CONF="$B/slurm/slurm.conf"
  for pidfile in slurmd slurmctld slurmdbd mysql/mariadb munge/munged; do
    if [ -s "$B/$pidfile.pid" ]; then kill "$(cat "$B/$pidfile.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for pidfile in slurmd slurmctld slurmdbd mysql/mariadb munge/munged; do
    if [ -s "$B/$pidfile.pid" ]; then kill -9 "$(cat "$B/$pidfile.pid")" 2>/dev/null || true; fi
  done
  rm -f "$STATE"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local seconds="$1" what="$2"; shift 2
  for _ in $(seq "$((seconds * 5))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "slurm.sh: $what did not come up within $seconds s; logs in $B/log" >&2
  exit 1
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi
[ "${1:-}" = start ] || { echo "usage: .ci/slurm.sh start|stop" >&2; exit 2; }
stop  # a cluster left by an earlier run

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client slurmdbd munge mariadb-server >&2
fi

B="$(mktemp -d /tmp/crlbench-slurm.XXXXXX)"
echo "$B" > "$STATE"
mkdir -p "$B/munge" "$B/slurm" "$B/state" "$B/spool" "$B/log" "$B/mysql/data"
chmod 755 "$B" "$B/munge"  # munged refuses a socket folder others cannot traverse

# munge
mungekey -c -k "$B/munge/munge.key" >&2
munged --key-file="$B/munge/munge.key" --socket="$B/munge/munge.socket" --pid-file="$B/munge/munged.pid" \
  --log-file="$B/log/munged.log" --seed-file="$B/munge/munge.seed" >&2

# MariaDB for slurmdbd
mariadb-install-db --no-defaults --datadir="$B/mysql/data" --user=root >"$B/log/mariadb-install.log" 2>&1
setsid mariadbd --no-defaults --datadir="$B/mysql/data" --socket="$B/mysql/mysql.sock" --port=$((PORT + 3)) \
  --bind-address=127.0.0.1 --user=root --pid-file="$B/mysql/mariadb.pid" --log-error="$B/log/mariadb.log" \
  </dev/null >/dev/null 2>&1 &
wait_for 60 MariaDB mariadb --no-defaults -S "$B/mysql/mysql.sock" -u root -e "SELECT 1"
mariadb --no-defaults -S "$B/mysql/mysql.sock" -u root -e "
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

NODE="$(slurmd -C | head -1 | sed -E 's/ RealMemory=[0-9]+//')"
cat > "$B/slurm/slurm.conf" <<EOF
ClusterName=crlbench
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$B/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool
SlurmctldPidFile=$B/slurmctld.pid
SlurmdPidFile=$B/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=2
MinJobAge=3600
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
AccountingStoragePass=$B/munge/munge.socket
$NODE NodeAddr=127.0.0.1
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$B/slurm/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$B/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$B/slurmdbd.pid
LogFile=$B/log/slurmdbd.log
EOF
chmod 600 "$B/slurm/slurmdbd.conf"
export SLURM_CONF="$B/slurm/slurm.conf"

slurmdbd >&2
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster crlbench >/dev/null 2>&1 || true
slurmctld >&2
slurmd >&2
wait_for 60 "the node" sh -c 'sinfo -h -o %t | grep -qx idle'
echo "$SLURM_CONF"
