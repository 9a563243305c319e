"""
test_stacks.py — whole stacks and their names: through libc code built
without frame pointers, in a program built without them, in a dlopened
plugin (loaded, and unloaded before the profile is written), and C++ names
demangled.
"""

import re

import pytest

from conftest import pprof_raw, pprof_top, pprof_traces, prog


LIBC_FRAME = re.compile(r"qsort|msort|libc\.so")


def reaches_main_through_libc(trace):
    """main, then at least one frame of libc's qsort machinery, then
    compare_items, root first: the unwinder got from the comparator back
    through libc (no frame pointers there) to main."""
    frames = trace.root_to_leaf()
    mains = [i for i, f in enumerate(frames) if re.fullmatch(r"main(\(.*\))?", f)]
    if not mains or not frames[-1].startswith("compare_items"):
        return False
    return any(LIBC_FRAME.search(f) for f in frames[mains[0] + 1:-1])


def comparator_traces(path):
    traces = pprof_traces(path, sample_index="samples")
    return [t for t in traces if re.fullmatch(r"compare_items(\(.*\))?", t.frames[0])]


@pytest.mark.parametrize("build", ["qsort_cmp", "qsort_cmp_nofp"])
def test_qsort_comparator_stack_is_complete(record, build):
    r = record([prog(build), "1"], hz=1000)
    in_cmp = comparator_traces(r.output)
    assert in_cmp, "no sample has compare_items as its leaf"
    total = sum(t.seconds for t in in_cmp)
    complete = sum(t.seconds for t in in_cmp if reaches_main_through_libc(t))
    sample = "\n".join(" <- ".join(t.frames) for t in in_cmp[:5])
    # Every sample in the comparator has the same shape; allow a few that
    # land where CFI cannot be followed (e.g. the first instruction).
    assert complete >= 0.9 * total, (
        f"only {complete:.0f} of {total:.0f} samples in compare_items have main ... libc qsort "
        f"... compare_items; some stacks (leaf first):\n{sample}")


def test_qsort_libc_frame_named(record):
    # libc has no .symtab: its exported functions are named from .dynsym
    # (qsort_r calls the static msort_with_tmp, which may show as
    # libc.so.6+offset).
    r = record([prog("qsort_cmp_nofp"), "0.5"], hz=1000)
    frames = {f for t in comparator_traces(r.output) for f in t.frames}
    assert any(re.match(r"(__)?qsort(_r)?\b", f) for f in frames), (
        f"no frame named qsort/qsort_r under compare_items; frames: {sorted(frames)[:30]}")


def test_dlopened_library_frames_named(record):
    r = record([prog("dlopen_loop"), "hold", "1"], hz=1000)
    top = pprof_top(r.output)
    assert "plugin_compute" in top, f"plugin_compute missing\n{top.text}"
    assert top["plugin_compute"][0] >= 80, f"plugin_compute flat {top['plugin_compute']}\n{top.text}"
    raw = pprof_raw(r.output)
    locs = [loc for loc in raw.locations if "plugin_compute" in loc]
    assert any(re.search(r"libplugin\.c:\d+", loc) for loc in locs), "\n".join(locs)
    assert re.search(r"libplugin\.so", raw.text), "mapping of libplugin.so missing"


def test_unloaded_library_frames_still_identified(record):
    # The plugin is dlclosed before exit: when the profile is written the
    # code is no longer mapped.  The spec allows module+offset then, but
    # not a bare address or a wrong name.
    r = record([prog("dlopen_loop"), "hold-close", "1"], hz=1000)
    top = pprof_top(r.output)
    named = [f for f, (flat, _) in top.items() if "plugin_compute" in f or "libplugin.so" in f]
    flat = sum(top[f][0] for f in named)
    assert flat >= 80, (f"only {flat:.1f}% of samples name plugin_compute or libplugin.so "
                        f"(the hot code)\n{top.text}")


def test_cpp_names_demangled(record):
    r = record([prog("exceptions"), "30000", "1"], hz=1000)
    raw = pprof_raw(r.output)
    ours = [loc for loc in raw.locations
            if re.search(r"throw_depth|exception_round|rethrow_middle|capture_exception|run_job", loc)]
    assert ours, f"none of exceptions.cc's functions in the profile\n{raw.text[-3000:]}"
    mangled = [loc for loc in raw.locations if re.search(r"(^|\s)_Z[A-Za-z0-9_]+", loc)]
    assert not mangled, "mangled names in the profile:\n" + "\n".join(mangled[:20])
