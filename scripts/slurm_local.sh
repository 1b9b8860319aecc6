#!/usr/bin/env bash
# A one-node Slurm cluster on this host, for tests (`pytest -m slurm`) and for trying the Slurm
# executor without a cluster. Needs root (it installs Debian's slurm-wlm and munge if missing).
#
#   scripts/slurm_local.sh start   # install if needed, write the config, start the daemons
#   scripts/slurm_local.sh stop    # stop the daemons started here
#   source <(scripts/slurm_local.sh env)   # SLURM_CONF for sbatch/srun/sinfo in this shell
#
# Everything lives under $SLURM_LOCAL_DIR (default /tmp/slurm-local): config, state, spool, logs.
# No cgroups (containers rarely allow them): proctrack/linuxproc and task/none.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
CPUS=${SLURM_LOCAL_CPUS:-8}  # advertised CPUs (config_overrides): lets small jobs share 2 cores

die() { echo "slurm_local: $*" >&2; exit 1; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "slurm-wlm/munge are not installed and this is not root; apt-get install -y slurm-wlm munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed (no network?)"
  apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
}

write_conf() {
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat >"$CONF" <<EOF
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=${SLURM_LOCAL_CTLD_PORT:-6817}
SlurmdPort=${SLURM_LOCAL_D_PORT:-6818}
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=$HOST CPUs=$CPUS RealMemory=65536 State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # Daemons and clients read the same file; plugstack.conf must exist beside it.
  [ -f "$DIR/plugstack.conf" ] || : >"$DIR/plugstack.conf"
}

start_munge() {
  [ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  if munge -n >/dev/null 2>&1; then return; fi
  munged --force 2>"$DIR/log/munged.err" || die "munged did not start: $(cat "$DIR/log/munged.err")"
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && return; sleep 0.1; done
  die "munge does not answer (munge -n fails); see $DIR/log/munged.err"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install
  write_conf
  export SLURM_CONF=$CONF
  start_munge
  alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF" || die "slurmctld failed: $(tail -5 "$DIR/log/slurmctld.log")"
  alive "$DIR/slurmd.pid" || slurmd -f "$CONF" || die "slurmd failed: $(tail -5 "$DIR/log/slurmd.log")"
  for _ in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    case "$state" in
      idle*|mixed*|allocated*) echo "slurm_local: node $HOST is $state (SLURM_CONF=$CONF)"; return ;;
      down*|drain*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  die "node $HOST never became idle (sinfo: ${state:-no answer}); see $DIR/log/slurmctld.log and slurmd.log"
}

stop() {
  for d in slurmd slurmctld; do
    if alive "$DIR/$d.pid"; then kill "$(cat "$DIR/$d.pid")"; fi
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) die "usage: $0 start|stop|env" ;;
esac
