#!/usr/bin/env bash
# Starts a single-node Slurm cluster (this host) for the Slurm executor's
# tests and exports DG_TEST_SLURM=1, DG_TEST_SLURM_PARTITION and SLURM_CONF.
# Source it: `. .ci/slurm.sh`. Needs root: installs Debian's slurm-wlm and
# munge when they are missing, starts munged, then slurmctld and slurmd as
# root daemons with their configuration, state and logs in DG_SLURM_DIR
# (default /tmp/dg-slurm), and waits until the node is idle.
# Unlike the other services it keeps running when the shell exits (jobs
# outlive their submitter); sourcing it again reuses the running cluster,
# or restarts it when the generated configuration changed. Stop it with
# `dg_slurm_stop` (defined here), e.g. `. .ci/slurm.sh; dg_slurm_stop`.

DG_SLURM_DIR=${DG_SLURM_DIR:-/tmp/dg-slurm}
# Jobs per core (partition OverSubscribe=FORCE:N). slurmctld starts pending
# jobs about twice a second (its background loop once a second after jobs
# end, plus a backfill pass every second), so with one job per core 1,000
# trivial array tasks take 4 minutes on 2 cores; 8 per core, 35 s.
DG_SLURM_OVERSUBSCRIBE=${DG_SLURM_OVERSUBSCRIBE:-8}

# True when the pid file $1 names a live process called $2. Not a zombie:
# a killed daemon may stay one for a while when PID 1 does not reap orphans.
_dg_slurm_alive() {
  local pid comm st rest
  pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] \
    && read -r pid comm st rest 2>/dev/null <"/proc/$pid/stat" \
    && [ "$comm" = "($2)" ] && [ "$st" != Z ]
}

# Stops slurmd and slurmctld, and munged unless given --keep-munge.
dg_slurm_stop() {
  local f name i
  local daemons=("$DG_SLURM_DIR/slurmd.pid:slurmd" "$DG_SLURM_DIR/slurmctld.pid:slurmctld")
  [ "${1:-}" = --keep-munge ] || daemons+=(/run/munge/munged.pid:munged)
  SLURM_CONF=$DG_SLURM_DIR/slurm.conf scontrol shutdown >/dev/null 2>&1
  for f in "${daemons[@]}"; do
    name=${f##*:} f=${f%:*}
    _dg_slurm_alive "$f" "$name" && kill "$(cat "$f")" 2>/dev/null
    for i in $(seq 100); do _dg_slurm_alive "$f" "$name" || break; sleep 0.1; done
  done
  return 0
}

_dg_slurm_start() {
  local PATH=$PATH:/usr/sbin:/sbin
  local dir=$DG_SLURM_DIR conf=$DG_SLURM_DIR/slurm.conf
  local node hw state i changed=0 resumed=-50
  case $DG_SLURM_OVERSUBSCRIBE in
    '' | *[!0-9]* | 0) echo "DG_SLURM_OVERSUBSCRIBE must be a positive integer" >&2; return 1 ;;
  esac

  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "== installing slurm-wlm and munge"
    # Without recommends: slurm-wlm's recommended plugins (and their -dev
    # packages) triple the download and are not used here.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurm-wlm munge >/dev/null 2>&1 \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          slurm-wlm munge >/dev/null; } \
      || { echo "cannot install slurm-wlm and munge" >&2; return 1; }
  fi

  # munged runs as the munge user (as Debian's init script does); it insists
  # that the key and its directories belong to that user.
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key \
      || { echo "cannot create /etc/munge/munge.key" >&2; return 1; }
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key && chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
  if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    chmod 0700 /var/log/munge
    # --force: start over a stale socket or pid file left by a killed munged.
    runuser -u munge -- munged --force </dev/null >/dev/null 2>&1 \
      || { echo "cannot start munged, see /var/log/munge/munged.log" >&2; return 1; }
    for i in $(seq 100); do
      munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
      [ "$i" = 100 ] && { echo "munged does not answer, see /var/log/munge/munged.log" >&2; return 1; }
      sleep 0.1
    done
  fi

  # One node, this host, reached at 127.0.0.1 so that no DNS is needed;
  # slurmd recognises itself by `hostname -s`, which must resolve for srun.
  node=$(hostname -s)
  if ! getent hosts "$node" >/dev/null; then
    echo "127.0.0.1 $node  # added by dg's .ci/slurm.sh" >>/etc/hosts
  fi
  # The node's real CPUs, sockets, cores, threads and memory, as slurmd sees
  # them: a node configured with more than it reports is set INVALID.
  hw=$(env -u SLURM_CONF slurmd -C | sed -n '1s/^NodeName=[^ ]* //p')
  [ -n "$hw" ] || { echo "slurmd -C printed no node line" >&2; return 1; }

  mkdir -p "$dir/state" "$dir/spool"
  cat >"$conf.new" <<EOF
# Written by dg's .ci/slurm.sh; rewritten each time it is sourced.
ClusterName=dg-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
# No cgroups: nothing to set up in a container, and tests need no limits.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct does not work. Finished jobs stay visible to squeue
# and scontrol for MinJobAge seconds, and each one is appended to JobCompLoc.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
MinJobAge=300
# Arrays of 1,000 ready partitions, and many of them within MinJobAge.
MaxArraySize=10001
MaxJobCount=200000
# Cores are the consumable resource, memory is not: without DefMemPerCPU
# a memory-tracking node would give each job all of its memory, one at a time.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Start jobs within about a second of their submission or of a slot freeing
# up: Slurm's shortest intervals (its main loop wakes once a second anyway).
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=1,default_queue_depth=1000
CompleteWait=0
# scancel sends SIGTERM, then SIGKILL after KillWait seconds.
KillWait=5
# An srun or salloc that died leaves its allocation running until this
# many seconds (0 would be forever); batch jobs are not concerned.
InactiveLimit=60
MessageTimeout=10
# A node that was down (a killed slurmd, a previous run) comes back when it registers.
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:$DG_SLURM_OVERSUBSCRIBE
EOF
  if cmp -s "$conf.new" "$conf"; then
    rm -f "$conf.new"
  else
    mv "$conf.new" "$conf"
    changed=1
  fi
  export SLURM_CONF=$conf

  if [ "$changed" = 1 ] && { _dg_slurm_alive "$dir/slurmctld.pid" slurmctld || _dg_slurm_alive "$dir/slurmd.pid" slurmd; }; then
    echo "== slurm configuration changed, restarting"
    dg_slurm_stop --keep-munge
  fi
  # Errors before a daemon opens its log file (a bad slurm.conf) go to start.log.
  if ! _dg_slurm_alive "$dir/slurmctld.pid" slurmctld; then
    slurmctld -f "$conf" </dev/null >>"$dir/start.log" 2>&1 \
      || { echo "slurmctld did not start, see $dir/start.log and $dir/slurmctld.log" >&2; return 1; }
  fi
  if ! _dg_slurm_alive "$dir/slurmd.pid" slurmd; then
    slurmd -f "$conf" </dev/null >>"$dir/start.log" 2>&1 \
      || { echo "slurmd did not start, see $dir/start.log and $dir/slurmd.log" >&2; return 1; }
  fi

  # Ready when slurmd answers (slurmctld may still show a killed slurmd's
  # node as idle) and the node is idle (or running jobs). A node that
  # answers but is DOWN or DRAINED (e.g. in the state saved by an earlier
  # run) is resumed, at most every 5 s; a "*" after the state means slurmd
  # has not answered slurmctld yet.
  for i in $(seq 600); do
    state=
    scontrol show slurmd >/dev/null 2>&1 && state=$(sinfo -h -N -n "$node" -o '%t' 2>/dev/null)
    case $state in
      '') ;;
      idle | mix | alloc | comp) break ;;
      *\**) ;;
      inval*)
        # Registered with less than configured (CPUs, memory): resuming
        # does not help.
        echo "slurm node $node is INVALID (see $dir/slurmctld.log):" >&2
        sinfo -R >&2 2>/dev/null
        return 1 ;;
      down* | drain* | drng* | fail*)
        if [ $((i - resumed)) -ge 50 ]; then
          scontrol update nodename="$node" state=resume 2>/dev/null
          resumed=$i
        fi ;;
    esac
    if [ "$i" = 600 ]; then
      echo "slurm node $node is not idle after 60 s (state: ${state:-none})" >&2
      sinfo -R >&2 2>/dev/null
      echo "see $dir/slurmctld.log, $dir/slurmd.log and $dir/start.log" >&2
      return 1
    fi
    sleep 0.1
  done

  export DG_TEST_SLURM=1
  export DG_TEST_SLURM_PARTITION=debug
  echo "== slurm $(sinfo -V | awk '{print $2}') on node $node ($(sinfo -h -N -n "$node" -o '%c CPUs, %m MB')), partition debug, conf $conf"
}

_dg_slurm_start || return 1 2>/dev/null || exit 1
