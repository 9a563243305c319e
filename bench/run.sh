#!/bin/sh
# run.sh — `make bench`: sonde's benchmark figures beside its peers'
# (gperftools, perf; go tool pprof for the server's merged views; wrk for
# the load generator).  Usage: sh bench/run.sh BUILD_DIR
# The orchestration is bench/bench.py (Debian's /usr/bin/python3, no extra
# modules); the programs it runs are bench/*.c and tests/system/progs/*.c,
# built by `make all`.  Results: BUILD_DIR/bench/results.md.
set -eu
if [ $# -ne 1 ]; then
    echo "usage: sh bench/run.sh BUILD_DIR" >&2
    exit 2
fi
here=$(dirname "$0")
/usr/bin/python3 "$here/bench.py" "$1"
# sonded: upload ingest rate and merged views (BUILD_DIR/bench/server-results.md)
/usr/bin/python3 "$here/server_bench.py" "$1"
# sonde loadtest beside wrk against nginx (BUILD_DIR/bench/loadgen-results.md)
/usr/bin/python3 "$here/loadgen_bench.py" "$1"
node "$here/console_bench.mjs" "$1"  # the console: navigation to a drawn 10,000-frame flame graph (BUILD_DIR/bench/console-results.md)
# the demo service under wrk: no agent, agent idle, agent profiling (BUILD_DIR/bench/demo-results.md)
exec /usr/bin/python3 "$here/demo_bench.py" "$1"
