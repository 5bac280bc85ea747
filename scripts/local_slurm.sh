#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for tests/CI and single-machine use. NOT for production:
# everything runs as root, authentication is a local munge key, there is no accounting database and no
# cgroup confinement (jobs are tracked by process id only, memory limits are not enforced).
# Without accounting `sacct` fails, so submitit warns "Bypassing sacct error" while it waits and learns that
# a job ended only from the result file the job writes: a job SLURM kills (time limit, scancel) before it
# writes one leaves the sweep waiting forever. Fine for tests, which bound each sweep with a timeout.
#
#   sudo bash scripts/local_slurm.sh        # or as root; then: sinfo, sbatch, python run.py -m hydra/launcher=slurm
#
# What it does (Debian/Ubuntu, apt):
#   1. installs slurmctld, slurmd, slurm-client and munge with apt-get if any of them is missing;
#   2. writes /etc/slurm/slurm.conf: this host as controller and as the only compute node (CPUs = nproc,
#      RealMemory = /proc/meminfo minus headroom), one default partition `debug`, cons_tres with
#      CR_Core_Memory (so 1-cpu jobs run side by side), proctrack/linuxproc and task/none (work in
#      containers), no accounting;
#   3. creates the munge key if absent, the state/spool/log directories, and starts munged, slurmctld
#      and slurmd as plain daemons (no systemd needed);
#   4. waits until the node is idle and prints one line saying the cluster is up.
# Idempotent: if the cluster already answers with this configuration it only says so (well under a second).
# A changed configuration (e.g. another machine size) restarts the daemons it started.
#
# Files: /etc/slurm/slurm.conf, /var/spool/slurmctld, /var/spool/slurmd, /var/log/slurm/*.log,
# /run/slurm/*.pid, /etc/munge/munge.key. Environment: SLURM_START_TIMEOUT (seconds, default 60).
# Stop it with: kill "$(cat /run/slurm/slurmd.pid)" "$(cat /run/slurm/slurmctld.pid)" "$(cat /run/munge/munged.pid)"
set -euo pipefail

CONF=/etc/slurm/slurm.conf
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
PID_DIR=/run/slurm
MUNGE_KEY=/etc/munge/munge.key
MUNGE_LOG=/var/log/munge/munged.log
PARTITION=debug
PACKAGES=(slurmctld slurmd slurm-client munge)
TIMEOUT=${SLURM_START_TIMEOUT:-60}
NODE=$(uname -n)
NODE=${NODE%%.*}  # the short host name: what slurmd looks itself up by in slurm.conf

die() {
    echo "local_slurm.sh: error: $*" >&2
    exit 1
}

show_logs() {
    local f
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" "$MUNGE_LOG"; do
        echo "---- last lines of $f ----" >&2
        tail -n 25 "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
}

[[ $EUID -eq 0 ]] || die "must run as root (it installs packages and starts system daemons)"

# ---- 1. packages -----------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get to install it"
    echo "local_slurm.sh: installing ${PACKAGES[*]} with apt-get"
    # Keep the packages' own service scripts from starting daemons with no configuration (this script
    # starts them); only when no policy is in place already (Docker images ship one).
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
fi

# ---- 2. configuration ------------------------------------------------------------------------------
cpus=$(nproc)
mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
headroom=$((mem_mb / 10 > 512 ? mem_mb / 10 : 512))  # for the OS and the daemons: 10%, at least 512 MB
real_mb=$((mem_mb - headroom > 256 ? mem_mb - headroom : 256))

render_conf() {
    cat <<EOF
# Written by scripts/local_slurm.sh: a one-node cluster for tests/CI, not for production.
ClusterName=local
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=${PID_DIR}/slurmctld.pid
SlurmdPidFile=${PID_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# Containers: no cgroups. Jobs are tracked by process id; nothing confines them to their cores/memory.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Cores and memory are the consumable resources, so jobs asking for one core each run side by side.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((real_mb / cpus))
# No accounting database: sacct fails (submitit warns, and sees a job end only by its result file).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${real_mb} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
}

node_state() {  # the node's state as sinfo prints it (idle, mix, alloc, down*, ...); empty if no answer
    timeout 15 sinfo --noheader --Node --nodes="$NODE" --format=%t 2>/dev/null | head -n 1 || true
}

usable() {  # the controller answers and the node takes jobs
    [[ $(node_state) =~ ^(idle|mix|alloc|comp)$ ]]
}

running() {  # running NAME: the daemon whose pid file we wrote is alive
    local pidfile=$PID_DIR/$1.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(cat "$pidfile")
    [[ -n $pid && -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

wanted=$(render_conf)
if [[ -f $CONF && $(cat "$CONF") == "$wanted" ]] && running slurmctld && running slurmd && usable; then
    echo "local_slurm.sh: SLURM cluster already up: node $NODE ($cpus CPUs, ${real_mb} MB), partition $PARTITION"
    exit 0
fi

mkdir -p /etc/slurm "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$PID_DIR"
chmod 755 "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$PID_DIR"
restart=0
if [[ ! -f $CONF || $(cat "$CONF") != "$wanted" ]]; then
    printf '%s\n' "$wanted" >"$CONF"
    chmod 644 "$CONF"
    restart=1
fi

# ---- 3. daemons ------------------------------------------------------------------------------------
stop() {  # stop NAME: end the daemon from our pid file, and wait for it to go
    local pid i
    running "$1" || return 0
    pid=$(cat "$PID_DIR/$1.pid")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

if [[ ! -s $MUNGE_KEY ]]; then
    mkdir -p "$(dirname "$MUNGE_KEY")"
    mungekey --create --keyfile="$MUNGE_KEY" 2>/dev/null \
        || dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    chown munge:munge "$MUNGE_KEY" "$(dirname "$MUNGE_KEY")"
    chmod 400 "$MUNGE_KEY"
    chmod 700 "$(dirname "$MUNGE_KEY")"
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge "$(dirname "$MUNGE_LOG")" /var/lib/munge
    chown munge:munge /run/munge "$(dirname "$MUNGE_LOG")" /var/lib/munge
    runuser -u munge -- munged || { show_logs; die "munged did not start"; }
    for ((i = 0; i < 50; i++)); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || { show_logs; die "munge does not work"; }
fi

if ((restart)); then
    stop slurmd
    stop slurmctld
fi
if ! running slurmctld; then
    slurmctld || { show_logs; die "slurmctld did not start"; }
fi
if ! running slurmd; then
    slurmd || { show_logs; die "slurmd did not start"; }
fi

# ---- 4. wait for the node --------------------------------------------------------------------------
resumed=0
start=$SECONDS
while ! usable; do
    state=$(node_state)
    # A node left down/drained by an earlier run: ask once to take it back (fails harmlessly if too early).
    if [[ $state =~ ^(down|drain|drng)$ ]] && ((!resumed)); then
        scontrol update NodeName="$NODE" State=RESUME 2>/dev/null && resumed=1
    fi
    if ((SECONDS - start >= TIMEOUT)); then
        show_logs
        scontrol show node "$NODE" >&2 2>/dev/null || true
        die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}'); logs above"
    fi
    sleep 0.5
done
echo "local_slurm.sh: SLURM cluster up: node $NODE ($cpus CPUs, ${real_mb} MB), partition $PARTITION" \
    "(config $CONF, logs $LOG_DIR) in $((SECONDS))s"
