#!/bin/sh
# run.sh — what `make run` shows: sonded in the background (embedded
# SQLite store under build/run/data, kept between runs) and the demo
# service (examples/demo_service.c) running under `sonde run`, its agent
# registered with that sonded and waiting for work.  Prints the console
# URL, the admin token, the demo's URL and commands to try: load the demo,
# profile it now, list the sessions.  Quiet otherwise: nothing loads the
# demo until you do.
#
# Idempotent: a second run keeps a sonded that is running (unless its
# binary was rebuilt, then it is restarted), keeps the agent token while
# sonded accepts it, and restarts the demo.  Everything lives in build/run:
#   admin-token, agent-token       the tokens (0600)
#   sonded.pid, sonded.log         the server (stdout: sonded.out)
#   demo.pid, demo.log, agent.log  the demo (stdout and stderr), its agent
#
#   SONDE_PORT       sonded's port (default 7070)
#   SONDE_DEMO_PORT  the demo's port (default 8080)
#   SONDE_RUN_DIR    instead of build/run (a second checkout, a test)
set -eu
B=${1:-build}
RUN=${SONDE_RUN_DIR:-build/run}
PORT=${SONDE_PORT:-7070}
DEMO_PORT=${SONDE_DEMO_PORT:-8080}
URL=http://127.0.0.1:$PORT
DEMO_URL=http://127.0.0.1:$DEMO_PORT
mkdir -p "$RUN"

# is_running PIDFILE NAME: the pid in PIDFILE is alive and is NAME (not a
# recycled pid of someone else's process).
is_running() {
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$2"
}

# stop PIDFILE NAME: SIGTERM, up to 15 s for a clean exit (the demo's
# agent finishes its work with sonded), then SIGKILL.
stop() {
    is_running "$1" "$2" || return 0
    pid=$(cat "$1")
    echo "== stopping the previous $2 (pid $pid)"
    kill "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "   it did not exit within 15 s: SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# http_status URL [CURL ARGS...]: the HTTP status of a request, 000 when
# nothing answers.
http_status() {
    u=$1; shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$u" 2>/dev/null || true
}

# ---- sonded ---------------------------------------------------------------

# One admin token per checkout, made once: sonded takes it on the first
# start of an empty store, and we can print it again on every run.
if [ ! -s "$RUN/admin-token" ]; then
    (umask 077; printf 'sonde_%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$RUN/admin-token")
fi
TOKEN=$(cat "$RUN/admin-token")

if is_running "$RUN/sonded.pid" sonded; then
    if [ -n "$(find "$B/sonded" -newer "$RUN/sonded.pid" 2>/dev/null)" ]; then
        echo "== $B/sonded was rebuilt"
        stop "$RUN/demo.pid" demo_service
        stop "$RUN/sonded.pid" sonded
    elif [ "$(http_status "$URL/api/v1/health")" != 200 ]; then
        echo "== the running sonded does not answer on $URL"
        stop "$RUN/demo.pid" demo_service
        stop "$RUN/sonded.pid" sonded
    else
        echo "== sonded is running (pid $(cat "$RUN/sonded.pid")): keeping it"
    fi
fi
if ! is_running "$RUN/sonded.pid" sonded; then
    echo "== starting sonded on $URL (data: $RUN/data, log: $RUN/sonded.log)"
    : >"$RUN/sonded.out"
    SONDE_ADMIN_TOKEN=$TOKEN nohup "$B/sonded" --listen "127.0.0.1:$PORT" --data "$RUN/data" \
        >"$RUN/sonded.out" 2>"$RUN/sonded.log" </dev/null &
    echo $! >"$RUN/sonded.pid"
    i=0
    until grep -q '^sonded listening on' "$RUN/sonded.out"; do
        if ! kill -0 "$(cat "$RUN/sonded.pid")" 2>/dev/null || [ $i -ge 100 ]; then
            echo "sonded did not start; its log:" >&2
            cat "$RUN/sonded.log" >&2
            exit 1
        fi
        sleep 0.1; i=$((i + 1))
    done
fi

# ---- the agent token --------------------------------------------------------

# Kept while sonded accepts it.  An agent route with an empty body tells:
# 400 (the body) means the token and its role passed, 401/403 they did not.
AGENT_TOKEN=$(cat "$RUN/agent-token" 2>/dev/null || true)
if [ -z "$AGENT_TOKEN" ] ||
    [ "$(http_status "$URL/api/v1/agent/heartbeat" -X POST -H "Authorization: Bearer $AGENT_TOKEN" \
        -H 'Content-Type: application/json' -d '{}')" != 400 ]; then
    echo "== creating an agent token ($RUN/agent-token)"
    if ! AGENT_TOKEN=$("$B/sonde" token create --role agent --name make-run --server "$URL" \
        --token "$TOKEN" 2>"$RUN/token.err"); then
        echo "cannot create an agent token (is $RUN/admin-token the token of the store in $RUN/data?):" >&2
        cat "$RUN/token.err" >&2
        exit 1
    fi
    rm -f "$RUN/token.err"
    (umask 077; printf '%s\n' "$AGENT_TOKEN" >"$RUN/agent-token")
fi

# ---- the demo service ---------------------------------------------------------

stop "$RUN/demo.pid" demo_service
echo "== starting the demo on $DEMO_URL under sonde run (log: $RUN/demo.log, agent log: $RUN/agent.log)"
: >"$RUN/agent.log"
# `sonde run` execs the demo in place: $! is the demo's pid.
nohup "$B/sonde" run --server "$URL" --app demo --token "$AGENT_TOKEN" --log "$RUN/agent.log" \
    -- "$B/examples/demo_service" --port "$DEMO_PORT" >"$RUN/demo.log" 2>&1 </dev/null &
DEMO_PID=$!
echo "$DEMO_PID" >"$RUN/demo.pid"

i=0
until [ "$(http_status "$DEMO_URL/health")" = 200 ]; do
    if ! kill -0 "$DEMO_PID" 2>/dev/null || [ $i -ge 100 ]; then
        echo "the demo did not start (port $DEMO_PORT taken? SONDE_DEMO_PORT picks another); its log:" >&2
        cat "$RUN/demo.log" >&2
        exit 1
    fi
    sleep 0.1; i=$((i + 1))
done

# Registered: the demo's pid among the running agents.
registered=0
i=0
while [ $i -lt 150 ]; do
    if "$B/sonde" agents --app demo --status running --json --server "$URL" --token "$TOKEN" \
        2>/dev/null | grep -q "\"pid\": *${DEMO_PID}[,}]"; then
        registered=1
        break
    fi
    kill -0 "$DEMO_PID" 2>/dev/null || break
    sleep 0.1; i=$((i + 1))
done

echo
echo "console:      $URL/  (sonded pid $(cat "$RUN/sonded.pid"); stop: kill \$(cat $RUN/sonded.pid))"
echo "admin token:  $TOKEN"
echo "demo:         $DEMO_URL  /fast /cpu /slow /health  (pid $DEMO_PID; stop: kill \$(cat $RUN/demo.pid))"
echo
echo "try:"
echo "  export SONDE_SERVER=$URL SONDE_TOKEN=$TOKEN"
echo "  curl $DEMO_URL/cpu          # one request; some load: wrk -c4 -d60s $DEMO_URL/cpu &"
echo "  $B/sonde profile-now --app demo --duration 30"
echo "  $B/sonde sessions"
echo "  $B/sonde task create --app demo --interface 'GET /slow' --duration 5m --threshold 200"
echo "  curl '$DEMO_URL/slow?ms=1500'; $B/sonde task list; $B/sonde task captures TASK_ID"
if [ $registered = 0 ]; then
    echo >&2
    echo "warning: the demo's agent has not registered with sonded within 15 s; its log ($RUN/agent.log):" >&2
    tail -n 20 "$RUN/agent.log" >&2 || true
    exit 1
fi
