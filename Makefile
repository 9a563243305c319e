# sonde — one GNU Makefile for the agent (libsonde.so), the CLI (sonde), the
# unit tests, the system-test programs and the benchmarks.
#
#   make            build everything into build/
#   make run        install deps, build, start sonded + the demo service under the agent
#   make check      install deps, build, run every test (plain + ASan/UBSan)
#   make bench      benchmarks, printed beside their peers
#   make SAN=1 ...  the same with -fsanitize=address,undefined into build/san
#   make install    PREFIX=/usr/local
#   make format     clang-format every source file

PREFIX ?= /usr/local
CC ?= cc
CXX ?= c++

ifeq ($(SAN),1)
B := build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SAN),thread)
B := build/tsan
SANFLAGS := -fsanitize=thread
else
B := build
SANFLAGS :=
endif
# A private build directory (parallel work trees, benchmarks): make BUILDDIR=...
ifdef BUILDDIR
B := $(BUILDDIR)
endif

WERROR := $(if $(CI),-Werror,)
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes $(WERROR)
OPT ?= -O2 -g
CPPFLAGS := -Iinclude -Isrc -Isrc/agent -I$(B)/gen -D_GNU_SOURCE
CFLAGS := -std=gnu11 $(OPT) $(WARN) -fPIC $(SANFLAGS) -MMD -MP

PKGS := libdw libelf libprotobuf-c zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CPPFLAGS += $(PKG_CFLAGS)
# sonded (HTTP server, JSON, SQLite store, token hashes) and the CLI's
# server commands (HTTP client, JSON).
SERVER_PKGS := libmicrohttpd jansson sqlite3 nettle libprotobuf-c zlib
SERVER_LIBS := $(shell pkg-config --libs $(SERVER_PKGS) 2>/dev/null) -lpthread -lm
CLI_PKGS := libcurl jansson libprotobuf-c zlib
CLI_LIBS := $(shell pkg-config --libs $(CLI_PKGS) 2>/dev/null) -lm
# The HTTP load generator (loadgen*.c, histogram.c) is sonded's and the
# CLI's, never the agent's: its own object list, http-parser for responses.
LOADGEN_LIBS := -lhttp_parser -ljansson -lpthread -lm
SERVER_LIBS += $(LOADGEN_LIBS)
CLI_LIBS += $(LOADGEN_LIBS)
CPPFLAGS += $(shell pkg-config --cflags $(SERVER_PKGS) libcurl 2>/dev/null)

PROTO_DIR := /usr/share/gocode/src/github.com/google/pprof/proto
GEN_C := $(B)/gen/profile.pb-c.c
GEN_H := $(B)/gen/profile.pb-c.h

AGENT_SRCS := $(sort $(wildcard src/agent/*.c src/agent/sigsafe/*.c))
LOADGEN_SRCS := src/common/histogram.c $(sort $(wildcard src/common/loadgen*.c))
COMMON_SRCS := $(filter-out $(LOADGEN_SRCS),$(sort $(wildcard src/common/*.c)))
CLI_SRCS := $(sort $(wildcard src/cli/*.c))
SERVER_SRCS := $(sort $(wildcard src/server/*.c))

AGENT_OBJS := $(AGENT_SRCS:%.c=$(B)/obj/%.o)
COMMON_OBJS := $(COMMON_SRCS:%.c=$(B)/obj/%.o) $(B)/obj/gen/profile.pb-c.o
LOADGEN_OBJS := $(LOADGEN_SRCS:%.c=$(B)/obj/%.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(B)/obj/%.o)
SERVER_OBJS := $(SERVER_SRCS:%.c=$(B)/obj/%.o)
# Everything of sonded but main(), for the unit tests.
SERVER_LIB_OBJS := $(filter-out $(B)/obj/src/server/main.o,$(SERVER_OBJS))
SIGSAFE_OBJS := $(filter $(B)/obj/src/agent/sigsafe/%,$(AGENT_OBJS))

# The agent's server link (uplink*.c) speaks JSON with jansson and HTTP with
# libcurl, which it dlopen()s only when it connects (uplink_curl.h): not
# linked, so a host that never connects never loads libcurl's ~25 libraries.
AGENT_LIBS := $(PKG_LIBS) $(shell pkg-config --libs jansson 2>/dev/null) -l:libiberty.a \
	-lpthread -lrt -ldl
LIBSONDE := $(B)/libsonde.so
LIBSONDE_A := $(B)/libsonde_internal.a
SONDE := $(B)/sonde
SONDED := $(B)/sonded
SONDED_A := $(B)/libsonded_internal.a

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

# Programs profiled by the system tests and benchmarks.  Per-program flags:
# PROG_FLAGS_<name>.  lib*.c become shared libraries for dlopen tests.
PROG_C := $(sort $(filter-out tests/system/progs/lib%,$(wildcard tests/system/progs/*.c)))
PROG_CXX := $(sort $(wildcard tests/system/progs/*.cc))
PROG_LIB := $(sort $(wildcard tests/system/progs/lib*.c))
PROGS := $(PROG_C:tests/system/progs/%.c=$(B)/progs/%) \
         $(PROG_CXX:tests/system/progs/%.cc=$(B)/progs/%) \
         $(PROG_LIB:tests/system/progs/%.c=$(B)/progs/%.so)
PROG_CFLAGS := -O1 -g -pthread -Iinclude
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLES := $(EXAMPLE_SRCS:examples/%.c=$(B)/examples/%)
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(B)/bench/%)

ALL_TARGETS := $(LIBSONDE) $(SONDE) $(SONDED) $(UNIT_BINS) $(PROGS) $(EXAMPLES) $(BENCH_BINS)

.PHONY: all web agent cli server unit progs run check check-unit check-system bench install clean format deps
.DEFAULT_GOAL := all

all: $(ALL_TARGETS) web
agent: $(LIBSONDE)
cli: $(SONDE)
server: $(SONDED)
unit: $(UNIT_BINS)
progs: $(PROGS)

deps:
	@sh scripts/deps.sh

$(GEN_C) $(GEN_H): $(PROTO_DIR)/profile.proto
	@mkdir -p $(B)/gen
	protoc-c --c_out=$(B)/gen -I$(PROTO_DIR) $(PROTO_DIR)/profile.proto

# Everything may include the generated header.
$(AGENT_OBJS) $(COMMON_OBJS) $(CLI_OBJS) $(SERVER_OBJS): | $(GEN_H)

$(B)/obj/gen/profile.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -w -fvisibility=hidden -c $< -o $@

# The agent is a guest: everything hidden but sonde_*.
$(B)/obj/src/agent/%.o: src/agent/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fvisibility=hidden -ftls-model=initial-exec -c $< -o $@

# The signal handler's world: no stack protector calls, no instrumentation
# that could allocate; ASan may not inspect foreign stack frames we read.
$(B)/obj/src/agent/sigsafe/%.o: src/agent/sigsafe/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fvisibility=hidden -ftls-model=initial-exec \
		-fno-stack-protector -c $< -o $@

$(B)/obj/src/common/%.o: src/common/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fvisibility=hidden -c $< -o $@

$(B)/obj/src/cli/%.o: src/cli/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/obj/src/server/%.o: src/server/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -DSONDE_WEB_DIR='"$(CURDIR)/web"' -c $< -o $@

# The console's front-end libraries (web/package.json, locked by
# web/package-lock.json), installed when the lock file is newer than the
# install.  Offline machines without npm still build the C parts.
WEB_STAMP := web/node_modules/.package-lock.json
web: $(WEB_STAMP)
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(LIBSONDE): $(AGENT_OBJS) $(COMMON_OBJS)
	$(CC) -shared $(SANFLAGS) -Wl,-z,nodelete -Wl,-z,now -Wl,--exclude-libs,ALL -o $@ $^ $(AGENT_LIBS)

$(LIBSONDE_A): $(AGENT_OBJS) $(COMMON_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(SONDE): $(CLI_OBJS) $(COMMON_OBJS) $(LOADGEN_OBJS) | $(LIBSONDE)
	$(CC) $(SANFLAGS) -o $@ $^ $(PKG_LIBS) $(CLI_LIBS)

$(SONDED_A): $(SERVER_LIB_OBJS) $(COMMON_OBJS) $(LOADGEN_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(SONDED): $(B)/obj/src/server/main.o $(SONDED_A)
	$(CC) $(SANFLAGS) -o $@ $^ $(SERVER_LIBS)

$(B)/tests/%: tests/unit/%.c $(LIBSONDE_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -DSONDE_BUILD_DIR='"$(B)"' -o $@ $< $(LIBSONDE_A) \
		-lcmocka $(AGENT_LIBS) $(UNIT_LIBS_$*) -lm

# test_uplink(_tasks) talk to sonded themselves with libcurl (the agent dlopens it).
UNIT_LIBS_test_uplink := $(shell pkg-config --libs libcurl 2>/dev/null)
UNIT_LIBS_test_uplink_tasks := $(UNIT_LIBS_test_uplink)

# Server unit tests link sonded's code (everything but main()).
SERVER_UNIT := $(filter $(addprefix $(B)/tests/,test_store test_store_tasks test_store_loadtests test_views test_validate test_auth \
		test_http test_loadtest_allow),$(UNIT_BINS))
$(SERVER_UNIT): $(B)/tests/%: tests/unit/%.c $(SONDED_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -DSONDE_BUILD_DIR='"$(B)"' -o $@ $< $(SONDED_A) \
		-lcmocka $(SERVER_LIBS)

# The load generator's tests link only its objects (test_loadgen serves
# its own targets with libmicrohttpd).
LOADGEN_UNIT := $(filter $(addprefix $(B)/tests/,test_histogram test_loadgen),$(UNIT_BINS))
UNIT_LIBS_test_loadgen := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
$(LOADGEN_UNIT): $(B)/tests/%: tests/unit/%.c $(LOADGEN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -DSONDE_BUILD_DIR='"$(B)"' -o $@ $< $(LOADGEN_OBJS) \
		-lcmocka $(UNIT_LIBS_$*) $(LOADGEN_LIBS)

$(B)/progs/%: tests/system/progs/%.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $(PROG_FLAGS_$*) -o $@ $< -ldl -lm

$(B)/progs/%: tests/system/progs/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(PROG_CFLAGS) $(PROG_FLAGS_$*) -o $@ $< -ldl

$(B)/progs/%.so: tests/system/progs/%.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -shared -fPIC $(PROG_FLAGS_$*) -o $@ $<

# Examples may use the span API (sonde.h); they call it through libsonde.so.
$(B)/examples/%: examples/%.c $(LIBSONDE)
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) $(EXAMPLE_FLAGS_$*) -o $@ $< $(EXAMPLE_LIBS_$*) -lm

$(B)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(PROG_CFLAGS) -O2 $(BENCH_FLAGS_$*) -o $@ $< $(BENCH_LIBS_$*) -ldl -lm

-include tests/system/progs/flags.mk
-include bench/flags.mk
-include examples/flags.mk

run: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/run.sh $(B)

check: deps
	@sh scripts/check.sh

check-unit: unit
	@sh scripts/check.sh --unit-only $(B)

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh $(B)

install: $(LIBSONDE) $(SONDE) $(SONDED)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIBSONDE) $(DESTDIR)$(PREFIX)/lib/libsonde.so
	install -m 755 $(SONDE) $(DESTDIR)$(PREFIX)/bin/sonde
	install -m 755 $(SONDED) $(DESTDIR)$(PREFIX)/bin/sonded
	install -m 644 include/sonde.h $(DESTDIR)$(PREFIX)/include/sonde.h

clean:
	rm -rf build

format:
	clang-format -i $(shell find include src tests/unit examples bench -name '*.[ch]')

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
