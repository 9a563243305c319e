#!/bin/sh
# run.sh — what `make run` shows at this stage: starts sonded (embedded
# SQLite store under build/run/data, kept between runs) in the background,
# prints its URL and the admin token, then profiles the bundled demo
# workload locally with `sonde record` and prints its top functions.
# The next stage (agent ↔ server link) replaces the local recording with a
# demo service whose agent reports to this sonded.
#
#   SONDE_PORT   port to listen on (default 7070)
set -eu
B=${1:-build}
RUN=build/run
PORT=${SONDE_PORT:-7070}
mkdir -p "$RUN"

# One admin token per checkout, made once: sonded takes it on the first
# start of an empty store, and we can print it again on every run.
if [ ! -s "$RUN/admin-token" ]; then
    (umask 077; printf 'sonde_%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$RUN/admin-token")
fi
TOKEN=$(cat "$RUN/admin-token")

if [ -s "$RUN/sonded.pid" ] && kill -0 "$(cat "$RUN/sonded.pid")" 2>/dev/null; then
    echo "== stopping the previous sonded (pid $(cat "$RUN/sonded.pid"))"
    kill "$(cat "$RUN/sonded.pid")"
    i=0
    while kill -0 "$(cat "$RUN/sonded.pid")" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i + 1))
    done
fi

echo "== starting sonded (data: $RUN/data, log: $RUN/sonded.log)"
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
URL=$(sed -n 's/^sonded listening on //p' "$RUN/sonded.out" | head -1)

OUT="$B/demo.pb.gz"
echo
echo "== sonde record -F 199 -o $OUT -- $B/examples/demo_workload 3 2"
"$B/sonde" record -F 199 -o "$OUT" -- "$B/examples/demo_workload" 3 2
echo
echo "== sonde top -n 12 $OUT"
"$B/sonde" top -n 12 "$OUT"
echo
echo "sonded:      $URL  (pid $(cat "$RUN/sonded.pid"); stop: kill \$(cat $RUN/sonded.pid))"
echo "admin token: $TOKEN"
echo "try:         export SONDE_SERVER=$URL SONDE_TOKEN=$TOKEN; $B/sonde agents; $B/sonde sessions"
