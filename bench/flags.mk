# flags.mk — per-program flags for bench/*.c, included by the top-level
# Makefile: BENCH_FLAGS_<name> (compiler), BENCH_LIBS_<name> (linker).

# Keep deep64's 62 recursive frames: no sibling-call or recursion folding.
BENCH_FLAGS_deep64 := -fno-optimize-sibling-calls -fno-inline
BENCH_FLAGS_busy2 := -pthread
# The launcher's own image must be small (see measure.c).
BENCH_FLAGS_measure := -static
# unwind_cost.c times the agent's own stack walker over its own tables: it
# needs the agent's internal headers and objects (libsonde_internal.a).
BENCH_FLAGS_unwind_cost := -Iinclude -Isrc -Isrc/agent -I$(B)/gen $(PKG_CFLAGS)
BENCH_LIBS_unwind_cost := $(LIBSONDE_A) $(AGENT_LIBS) $(SANFLAGS)
$(B)/bench/unwind_cost: $(LIBSONDE_A)
# ingest.c is an HTTP client (libcurl, keep-alive) that reads session ids
# from sonded's JSON answers (jansson).
BENCH_FLAGS_ingest := -pthread $(shell pkg-config --cflags libcurl jansson 2>/dev/null)
BENCH_LIBS_ingest := $(shell pkg-config --libs libcurl jansson 2>/dev/null) -pthread
# merge_views.c times sonded's flame tree merge (src/server/views.c): it
# needs the server's headers and objects (libsonded_internal.a).
BENCH_FLAGS_merge_views := -Isrc -I$(B)/gen $(shell pkg-config --cflags jansson libprotobuf-c)
BENCH_LIBS_merge_views := $(SONDED_A) $(SERVER_LIBS) $(SANFLAGS)
$(B)/bench/merge_views: $(SONDED_A)
# span_cost.c times sonde_span_begin + sonde_span_end as a host calls them:
# through the real libsonde.so (-lsonde, found at run time by rpath).
BENCH_FLAGS_span_cost := -pthread
BENCH_LIBS_span_cost := -L$(B) -lsonde -Wl,-rpath,$(abspath $(B)) $(SANFLAGS) -pthread
$(B)/bench/span_cost: $(LIBSONDE)
# task_cost.c times active profiling (task.h) on the agent's own code: the
# watcher thread, the signal handler, the blocked-thread read (libsonde_internal.a).
BENCH_FLAGS_task_cost := -pthread -Iinclude -Isrc -Isrc/agent -I$(B)/gen $(PKG_CFLAGS)
BENCH_LIBS_task_cost := $(LIBSONDE_A) $(AGENT_LIBS) $(SANFLAGS) -pthread
$(B)/bench/task_cost: $(LIBSONDE_A)
