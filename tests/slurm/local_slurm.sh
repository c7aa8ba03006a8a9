#!/usr/bin/env bash
# A private single-node Slurm for mart's tests: its own slurm.conf, ports, state and logs in one
# folder, so it neither needs nor touches /etc/slurm, a site's cluster, or another test's cluster.
# Clients reach it through SLURM_CONF=<dir>/slurm.conf (sbatch, scontrol and the jobs' srun).
#
#   bash local_slurm.sh start DIR          write DIR/slurm.conf, start slurmctld + slurmd, wait for
#                                          the node to be idle; prints the SLURM_CONF line to export
#   bash local_slurm.sh stop DIR           cancel its jobs, stop the two daemons it started
#   bash local_slurm.sh wait DIR JOB [S]   until JOB ends (S seconds at most, default 600); exit 0
#                                          only when it COMPLETED with exit code 0:0
#
# Needs root (slurmd starts job steps as their user) and Debian's slurmctld, slurmd and
# slurm-client (scripts/setup.sh installs them); libpmix-dev lets `srun --mpi=pmix` start Open MPI
# ranks. No munge: auth/none is enough on one machine. No cgroups: proctrack/linuxproc works in
# containers. Exits non-zero with the daemons' log tail when the cluster does not come up.
set -euo pipefail

die() { echo "local_slurm: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 start|stop DIR | wait DIR JOB [SECONDS]"
CMD=$1 DIR=$(realpath -m "$2")
export SLURM_CONF=$DIR/slurm.conf

# The pid in DIR/NAME.pid when that process is alive and is NAME (a reused pid is not ours).
daemon_pid() {
  local p
  p=$(tr -dc 0-9 2>/dev/null <"$DIR/$1.pid") || return 1
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ] && echo "$p"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_conf() {
  local host cpus ctld_port d_port
  host=$(hostname -s)
  # The machine's CPUs (nproc alone obeys OMP_NUM_THREADS, which the scripts set to 1), and at
  # least 2: mart's batch scripts ask for 2 tasks, which config_overrides lets a 1-CPU node take.
  cpus=$(getconf _NPROCESSORS_ONLN)
  [ "$cpus" -ge 2 ] || cpus=2
  # Two free ports next to each other, away from Slurm's defaults (6817/6818) that a real
  # cluster on this machine would hold.
  for ctld_port in $(seq 16817 2 16899); do
    d_port=$((ctld_port + 1))
    port_free "$ctld_port" && port_free "$d_port" && break
  done
  port_free "$ctld_port" || die "no free port pair in 16817-16900"
  mkdir -p "$DIR/state" "$DIR/spool"
  cat >"$SLURM_CONF" <<EOF
# mart's private test cluster (tests/slurm/local_slurm.sh); lives and dies with $DIR.
ClusterName=mart-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
# A requeued job may start again after the credential lifetime (default 120 s).
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Finished jobs stay visible to scontrol (there is no accounting database to ask).
MinJobAge=3600
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

node_state() { sinfo -h -N -o %T 2>/dev/null | head -1; }

start() {
  [ "$(id -u)" = 0 ] || die "needs root: slurmd starts job steps as the submitting user"
  local b
  for b in slurmctld slurmd sbatch scontrol sinfo; do
    command -v "$b" >/dev/null || die "$b is not installed (scripts/setup.sh installs slurmctld slurmd slurm-client)"
  done
  if daemon_pid slurmctld >/dev/null || daemon_pid slurmd >/dev/null; then stop; fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  write_conf
  # -c: no saved state; -i: ignore stale node state. Both daemonise (stdio closed) and write pid files.
  (cd / && slurmctld -c -f "$SLURM_CONF" </dev/null >"$DIR/slurmctld.out" 2>&1) || true
  (cd / && slurmd -c -f "$SLURM_CONF" </dev/null >"$DIR/slurmd.out" 2>&1) || true
  local i s=""
  for i in $(seq 1 120); do
    s=$(node_state || true)
    case "$s" in idle|mixed|allocated) break ;; esac
    sleep 0.5
  done
  case "$s" in
    idle|mixed|allocated) echo "export SLURM_CONF=$SLURM_CONF  # node $(hostname -s) $s" ;;
    *) tail -n 15 "$DIR"/*.out "$DIR"/*.log >&2 2>/dev/null || true
       stop >/dev/null 2>&1 || true
       die "the node did not become idle in 60 s (state '${s:-none}'; logs above, in $DIR)" ;;
  esac
}

stop() {
  local jobs p d i
  if daemon_pid slurmctld >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for i in $(seq 1 60); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
    fi
  fi
  for d in slurmd slurmctld; do
    p=$(daemon_pid "$d") || continue
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
    [ -d "/proc/$p" ] && kill -KILL "$p" 2>/dev/null || true
  done
}

wait_job() {
  local job=$1 limit=${2:-600} t0 line state code
  t0=$(date +%s)
  while :; do
    line=$(scontrol -o show job "$job" 2>/dev/null) || die "job $job is unknown to the cluster in $DIR"
    state=$(sed -n 's/.* JobState=\([A-Z_]*\).*/\1/p' <<<"$line")
    code=$(sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p' <<<"$line")
    case "$state" in
      PENDING|CONFIGURING|RUNNING|COMPLETING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|SIGNALING|SUSPENDED|RESIZING) ;;
      *) echo "job $job: $state, exit code $code"; [ "$state" = COMPLETED ] && [ "$code" = 0:0 ]; return ;;
    esac
    if [ $(($(date +%s) - t0)) -ge "$limit" ]; then echo "job $job: still $state after ${limit} s"; return 124; fi
    sleep 1
  done
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  wait) [ $# -ge 3 ] || die "usage: $0 wait DIR JOB [SECONDS]"; wait_job "$3" "${4:-600}" ;;
  *) die "unknown command '$CMD': start, stop or wait" ;;
esac
