#!/usr/bin/env bash
# Start a real single-node Slurm (munge, slurmctld, slurmd, slurmdbd + a private MariaDB for sacct)
# for testing and CI on Debian/Ubuntu, as root, without systemd. Installs the packages with apt-get
# only if they are missing. All state, logs, sockets and pid files live under the directory given
# as the first argument (default /tmp/slurm-harness). Idempotent: if the cluster in that directory
# already answers, it prints the export line and does nothing else.
#
#   sudo bash slurm/start_slurm.sh [/tmp/slurm-harness] && export SLURM_CONF=/tmp/slurm-harness/slurm.conf
#
# Env: ACCOUNTING=0 skips slurmdbd/MariaDB (then sacct does not work, and submitit cannot tell a job
# that died without a result); CGROUP=1 uses proctrack/task cgroup (needs cgroup v1 mounts); APT_OPTS
# passes extra options to apt-get install. Stop with slurm/stop_slurm.sh <same dir>.
set -euo pipefail
S=$(mkdir -p "${1:-/tmp/slurm-harness}" && cd "${1:-/tmp/slurm-harness}" && pwd)
ACCOUNTING=${ACCOUNTING:-1}
CGROUP=${CGROUP:-0}
export SLURM_CONF="$S/slurm.conf"
alive() { [ -s "$S/$1" ] && kill -0 "$(cat "$S/$1")" 2>/dev/null; }

# ---- already up? (all daemons alive and the node answers)
up=1
for f in munged.pid slurmctld.pid slurmd.pid; do alive "$f" || up=0; done
if [ "$ACCOUNTING" = 1 ]; then for f in slurmdbd.pid mysql/mariadb.pid; do alive "$f" || up=0; done; fi
if [ $up = 1 ] && [ -f "$SLURM_CONF" ] && timeout 5 sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
  echo "slurm already running under $S" >&2
  echo "export SLURM_CONF=$SLURM_CONF"
  exit 0
fi

if [ "$CGROUP" = 1 ]; then PROCTRACK=proctrack/cgroup; TASKPLUGIN=task/cgroup; else PROCTRACK=proctrack/linuxproc; TASKPLUGIN=task/affinity; fi
mkdir -p "$S"/{state,spool,log,mysql}

# ---- packages (only if missing)
PKGS="slurmctld slurmd slurm-client munge"
[ "$ACCOUNTING" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
need=0; for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || need=1; done
if [ $need = 1 ]; then
  command -v apt-get >/dev/null || { echo "apt-get not found: install $PKGS yourself" >&2; exit 3; }
  echo "installing $PKGS (log: $S/log/apt.log)" >&2
  timeout 300 apt-get update -qq >"$S/log/apt.log" 2>&1
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends ${APT_OPTS:-} $PKGS \
    >>"$S/log/apt.log" 2>&1 || { tail -20 "$S/log/apt.log" >&2; exit 3; }
fi

# ---- munge: key, pid, log and seed under $S. The socket stays at munge's compiled-in default path:
#      slurmctld's connection to slurmdbd ignores AuthInfo=socket=...
MSOCK=$(munged --help | sed -nE 's/.*--socket=PATH.*\[(.*)\]/\1/p')
mkdir -p "$S/munge" "$(dirname "${MSOCK:-/run/munge/munge.socket.2}")"; chmod 700 "$S/munge"
[ -s "$S/munge/munge.key" ] || mungekey --create --keyfile="$S/munge/munge.key"
if ! timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
  munged --force --key-file="$S/munge/munge.key" --pid-file="$S/munged.pid" \
         --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed"
fi
timeout 5 munge -n | timeout 5 unmunge >/dev/null

# ---- slurm.conf: this machine as node "localhost", layout from slurmd -C, 90% of its memory
H=$(hostname -s)
NODE=$(timeout 30 slurmd -C | head -1 | sed -E "s/^NodeName=[^ ]+/NodeName=localhost NodeAddr=127.0.0.1/")
MEM=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$NODE")
NODE=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$((MEM * 9 / 10))/" <<<"$NODE")
ACC="AccountingStorageType=accounting_storage/none"
[ "$ACCOUNTING" = 1 ] && ACC="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1"
cat > "$SLURM_CONF" <<CONF
ClusterName=harness
SlurmctldHost=${H}(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=$PROCTRACK
TaskPlugin=$TASKPLUGIN
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
$ACC
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=$S/log/jobcomp.txt
InactiveLimit=0
MinJobAge=300
KillWait=30
$NODE
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
if [ "$CGROUP" = 1 ]; then
  printf 'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=yes\nConstrainRAMSpace=yes\n' > "$S/cgroup.conf"
fi

# ---- accounting: private MariaDB on 127.0.0.1:3307 + slurmdbd
if [ "$ACCOUNTING" = 1 ]; then
  if ! alive mysql/mariadb.pid; then
    if [ ! -d "$S/mysql/data/mysql" ]; then
      timeout 120 mariadb-install-db --no-defaults --user=root --datadir="$S/mysql/data" \
        --auth-root-authentication-method=normal >"$S/log/mariadb-install.log" 2>&1
    fi
    setsid mariadbd --no-defaults --user=root --datadir="$S/mysql/data" --socket="$S/mysql/mysql.sock" --port=3307 \
      --bind-address=127.0.0.1 --pid-file="$S/mysql/mariadb.pid" --log-error="$S/log/mariadb.err" \
      --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
  fi
  ok=0; for i in $(seq 150); do
    timeout 5 mariadb --no-defaults -S "$S/mysql/mysql.sock" -uroot -e 'select 1' >/dev/null 2>&1 && { ok=1; break; }
    sleep 0.2; done
  [ $ok = 1 ] || { echo "mariadb did not start" >&2; tail -20 "$S/log/mariadb.err" >&2; exit 1; }
  timeout 10 mariadb --no-defaults -S "$S/mysql/mysql.sock" -uroot -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
  cat > "$S/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=$H
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$S/log/slurmdbd.log
PidFile=$S/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$S/slurmdbd.conf"
  alive slurmdbd.pid || slurmdbd   # no -f option: reads slurmdbd.conf next to $SLURM_CONF
  ok=0; for i in $(seq 60); do timeout 5 sacctmgr -n list cluster >/dev/null 2>&1 && { ok=1; break; }; sleep 0.5; done
  [ $ok = 1 ] || { echo "slurmdbd not answering" >&2; tail -20 "$S/log/slurmdbd.log" >&2; exit 1; }
  timeout 10 sacctmgr -i -Q add cluster harness >/dev/null 2>&1 || true
fi
alive slurmctld.pid || slurmctld -f "$SLURM_CONF"
alive slurmd.pid || slurmd -f "$SLURM_CONF" -N localhost
ok=0; for i in $(seq 60); do
  st=$(timeout 5 sinfo -h -o '%t' 2>/dev/null || true)
  grep -qE '^(idle|mix|alloc)' <<<"$st" && { ok=1; break; }
  grep -qE '^drain' <<<"$st" && timeout 5 scontrol update nodename=localhost state=resume 2>/dev/null || true
  sleep 0.5; done
[ $ok = 1 ] || { echo "node not idle" >&2; tail -20 "$S/log/slurmctld.log" "$S/log/slurmd.log" >&2; exit 1; }
timeout 5 sinfo >&2
echo "export SLURM_CONF=$SLURM_CONF"
