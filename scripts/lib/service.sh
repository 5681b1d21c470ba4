# shellcheck shell=bash
# What the scripts/services scripts share. Sourced, not run: the caller sets
# SVC_TAG (its log prefix) first, and PID_FILE, LOG_FILE, LOCK_FILE, probe,
# our_pid and do_start/do_stop/do_status (and more do_NAME) before svc_main.

# shellcheck disable=SC2034 # used by the scripts that source this
CACHE_ROOT="${PLAYGROUND_CACHE:-$HOME/.cache/playground}"
STATE_ROOT="${PLAYGROUND_STATE:-$HOME/.cache/playground/state}"
HOST=127.0.0.1

log() { printf '%s %s\n' "$SVC_TAG" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Exits unless every named variable holds a number.
need_numbers() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
    done
}

# Installs Debian packages, one apt at a time; a policy-rc.d keeps a
# package's init script from starting a system-wide daemon.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "need to install $* but apt-get is not available"
    local sudo=() policy=/usr/sbin/policy-rc.d created=0 rc=0
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need to install $*: run as root or install them by hand"
        sudo=(sudo)
    elif [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created=1
    fi
    mkdir -p "$STATE_ROOT"
    log "installing Debian packages: $*"
    (
        flock 8
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
                install -y -qq --no-install-recommends "$@" >/dev/null
    ) 8>"$STATE_ROOT/.apt.lock" || rc=$?
    ((created == 0)) || rm -f "$policy"
    ((rc == 0)) || die "apt-get install $* failed (exit $rc)"
}

# A throw-away CA (DIR/ca.pem, named CA_NAME) and a certificate for localhost
# and 127.0.0.1 signed by it (DIR/server.pem, DIR/server.key), made once.
ensure_cert() { # DIR CA_NAME
    local dir=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    [[ -s "$dir/ca.pem" && -s "$dir/server.pem" && -s "$dir/server.key" ]] && return 0
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    log "making a CA and a certificate for localhost in $dir"
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 3650 -subj "/CN=$2"
        openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
            -days 3650 -extfile server.ext
        rm -f ca.key server.csr server.ext ca.srl
    ) >"$dir/openssl.log" 2>&1 || die "openssl failed: $(cat "$dir/openssl.log")"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Prints the pid in PIDFILE if it runs and its command line matches PATTERN.
pid_of() {
    local pid
    [[ -f $1 ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
    printf '%s\n' "$pid"
}

# Starts COMMAND... detached (no stream or lock left open to the caller),
# output appended to LOGFILE, pid in PIDFILE and $DAEMON_PID.
start_daemon() {
    local logfile="$1" pidfile="$2"
    shift 2
    setsid nohup "$@" </dev/null >>"$logfile" 2>&1 7>&- 8>&- 9>&- &
    DAEMON_PID=$!
    echo "$DAEMON_PID" >"$pidfile"
}

# Runs COMMAND... every 0.1 s while it succeeds, for at most SECONDS; fails
# if it still does.
wait_while() {
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        "${@:2}" || return 0
        sleep 0.1
    done
    return 1
}

# SIGTERM, up to SECONDS for the exit, then SIGKILL; fails if it still runs.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    wait_while "$2" kill -0 "$1" 2>/dev/null && return 0
    log "pid $1 still alive after ${2}s; sending SIGKILL"
    kill -KILL "$1" 2>/dev/null || true
    wait_while 5 kill -0 "$1" 2>/dev/null
}

rotate_log() { [[ ! -f $1 ]] || mv -f "$1" "$1.1"; }

# Waits up to SECONDS until probe succeeds while PID runs; else stops it,
# shows the log and dies.
svc_wait_ready() {
    local pid=$1 started=$SECONDS
    while ((SECONDS - started < $2)); do
        if probe >/dev/null; then
            log "ready on $HOST:$PORT (pid $pid, $((SECONDS - started))s)"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "not ready after ${2}s; stopping pid $pid"
        stop_pid "$pid" 10 || true
    else
        log "pid $pid exited during startup"
    fi
    rm -f "$PID_FILE" ${PORT_FILE:+"$PORT_FILE"}
    log "last lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2 || true
    die "start failed"
}

# Stops the process of our_pid (SIGKILL after SECONDS) and waits for PORTS...
# to close; refuses to touch ports held by a process it did not start.
svc_stop() {
    local seconds=$1 pid p
    shift
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        for p in "$@"; do
            port_open "$p" && die "$HOST:$p is in use, but not by a process this script started (no live pid in $PID_FILE); not stopping it"
        done
        log "not running"
        return 0
    fi
    log "stopping pid $pid (SIGTERM, up to ${seconds}s)"
    stop_pid "$pid" "$seconds" || die "could not stop pid $pid"
    for p in "$@"; do
        wait_while 5 port_open "$p" || die "pid $pid stopped, but $HOST:$p is still open"
    done
    rm -f "$PID_FILE"
    log "stopped"
}

# Says who answers, when probe succeeds (what it prints goes in brackets).
svc_answering() {
    local pid what
    what="$(probe)" || return 1
    if pid="$(our_pid)"; then
        log "running and ready on $HOST:$PORT (pid $pid${what:+, $what})"
    else
        log "answering on $HOST:$PORT${what:+ ($what)}; not started by this script"
    fi
}

# The status subcommand: 0 answering, 1 our process runs but does not
# answer (WHY, if given, says what to look at), 3 not running.
svc_status() {
    local pid
    svc_answering && return 0
    if pid="$(our_pid)"; then
        log "pid $pid is alive but $HOST:$PORT does not answer${1:+ ($1)}"
        return 1
    fi
    log "not running"
    return 3
}

# The subcommands are the do_NAME functions, and restart.
usage() {
    local cmds
    cmds=$(declare -F | sed -n 's/^declare -f do_//p' | tr '\n' '|')
    printf 'usage: %s %srestart (scripts/services/README.md)\n' "$(basename "$0")" "$cmds" >&2
}

# Runs subcommand CMD [ARGS...] as do_CMD; the ones that change state hold
# LOCK_FILE (waiting up to LOCK_SECONDS), one start/stop at a time.
svc_main() {
    local wait=$1 cmd=${2:-}
    shift $(($# > 1 ? 2 : 1))
    case "$cmd" in
    start | stop | restart | reset | build)
        mkdir -p "$(dirname "$LOCK_FILE")"
        exec 9>"$LOCK_FILE" # held for the rest of the script
        flock -w "$wait" 9 || die "another start/stop holds $LOCK_FILE"
        ;;
    -h | --help | help) usage && exit 0 ;;
    esac
    if [[ $cmd == restart ]]; then
        do_stop && do_start "$@"
    elif [[ $cmd =~ ^[a-z]+$ ]] && declare -F "do_$cmd" >/dev/null; then
        "do_$cmd" "$@"
    else
        usage
        exit 2
    fi
}
