#!/usr/bin/env bash
# Stop the daemons started by start_slurm.sh, by the PIDs in their pid files: SIGTERM, then SIGKILL
# after 10 s (slurmd has been seen to ignore SIGTERM while its controller was gone). State and logs
# stay in the directory; delete it for a clean slate.   bash slurm/stop_slurm.sh [/tmp/slurm-harness]
S=${1:-/tmp/slurm-harness}
for f in slurmd.pid slurmctld.pid slurmdbd.pid mysql/mariadb.pid munged.pid; do
  [ -s "$S/$f" ] || continue
  p=$(cat "$S/$f")
  kill "$p" 2>/dev/null || { rm -f "$S/$f"; continue; }
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  rm -f "$S/$f"
  echo "stopped ${f%.pid} ($p)"
done
exit 0
