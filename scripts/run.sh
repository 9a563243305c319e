#!/bin/sh
# run.sh — what `make run` shows at this stage: profile the bundled demo
# workload with `sonde record` (no server needed) and print its top
# functions.  Later stages start sonded and a demo service here.
set -eu
B=${1:-build}
OUT="$B/demo.pb.gz"
echo "== sonde record -F 199 -o $OUT -- $B/examples/demo_workload 3 2"
"$B/sonde" record -F 199 -o "$OUT" -- "$B/examples/demo_workload" 3 2
echo
echo "== sonde top -n 12 $OUT"
"$B/sonde" top -n 12 "$OUT"
echo
echo "Open it in pprof's web view:  go tool pprof -http=127.0.0.1:8080 $OUT"
