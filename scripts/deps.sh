#!/bin/sh
# deps.sh — installs the Debian packages sonde needs to build, test and
# benchmark, and nothing that is already there.  Idempotent: a second run
# installs nothing and does not touch the network.
set -eu

# curl: `make run` waits for sonded and the demo with it; wrk loads the
# demo service in bench/demo_bench.py; libhttp-parser-dev: the load
# generator (src/common/loadgen*.c) parses responses with it.  nginx-light:
# the server both wrk and the load generator load in bench/loadgen_bench.py.
# chromium: the console's browser tests (tests/web, driven by playwright-core
# from npm).  Node.js and npm (the console's libraries, `npm ci` in web/)
# are Debian's nodejs and npm unless a node with npm is there already.
PKGS="gcc g++ make pkg-config binutils
libmicrohttpd-dev libjansson-dev libsqlite3-dev nettle-dev libcurl4-openssl-dev sqlite3 libhttp-parser-dev
libdw-dev libelf-dev libiberty-dev zlib1g-dev
libprotobuf-c-dev protobuf-c-compiler golang-github-google-pprof-dev
libcmocka-dev python3-pytest golang-go
google-perftools libgoogle-perftools-dev linux-perf
curl wrk nginx-light chromium"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PKGS="$PKGS nodejs npm"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi

echo "deps: installing$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
# Lists may be missing on a fresh machine; refresh them once if so.
if ! $SUDO apt-get install -y --no-install-recommends $missing; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends $missing
fi
