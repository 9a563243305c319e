"""
test_views_api.py — the views sonded computes from uploaded profiles
(docs/api.md "Views of one session", "Merged and diff views"): flame
graph, top functions, collapsed stacks, diff, label filters.

Real profiles, recorded by `sonde record`, go in through the agent routes
as an agent would send them (register → session → PUT profile); what comes
out is checked against the reference reader, `go tool pprof -raw` / `-top`
of the very same files: a merged view must be the exact sum of its
profiles' samples, stack by stack.
"""

import re
import time
import urllib.parse

import pytest

from conftest import encode_pprof, pprof, prog

READ = "reader"


# --------------------------------------------------------------------------
# The reference: go tool pprof -raw / -top of the uploaded files
# --------------------------------------------------------------------------

_SAMPLE = re.compile(r"^\s*(-?\d+(?:\s+-?\d+)*):((?:\s+\d+)*)\s*$")
_LABEL = re.compile(r"^\s+([^\s:]+):\[(.*)\]\s*$")
_LOC = re.compile(r"^\s*(\d+): (0x[0-9a-f]+) (?:M=(\d+) )?(?:\[F\] )?(.*)$")
_LINE = re.compile(r"^(.*) (\S*):(-?\d+) s=-?\d+(?:\((.*)\))?$")
_MAPPING = re.compile(r"^\s*(\d+): (0x[0-9a-f]+)/(0x[0-9a-f]+)/(0x[0-9a-f]+) (\S*)")


class Raw:
    """A profile as `go tool pprof -raw` prints it: sample types, and each
    sample's stack (frame names root first, inline frames expanded, named
    as sonded names them), values and string labels."""

    def __init__(self, path):
        text = pprof("-raw", path)
        self.types, self.default = [], None
        self.samples = []            # (frames root-first, [values], {label: value})
        locs, mappings = {}, {}
        section, cur_loc = None, None
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Samples:"):
                section = "samples"
                for j, t in enumerate(lines[i + 1].split()):
                    if t.endswith("[dflt]"):
                        self.default = j
                    self.types.append(t.replace("[dflt]", "").split("/")[0])
                continue
            if line.startswith("Locations"):
                section = "locations"
                continue
            if line.startswith("Mappings"):
                section = "mappings"
                continue
            if section == "samples":
                m = _SAMPLE.match(line)
                if m:
                    vals = [int(v) for v in m.group(1).split()]
                    if len(vals) == len(self.types):
                        ids = [int(x) for x in m.group(2).split()]
                        self.samples.append([ids, vals, {}])
                        continue
                lab = _LABEL.match(line)
                if lab and self.samples:
                    self.samples[-1][2][lab.group(1)] = lab.group(2)
            elif section == "locations":
                m = _LOC.match(line)
                if m:
                    cur_loc = int(m.group(1))
                    locs[cur_loc] = {"addr": int(m.group(2), 16), "map": m.group(3), "lines": []}
                    if m.group(4).strip():
                        locs[cur_loc]["lines"].append(m.group(4).strip())
                elif cur_loc is not None and line.startswith("             ") and line.strip():
                    locs[cur_loc]["lines"].append(line.strip())
            elif section == "mappings":
                m = _MAPPING.match(line)
                if m:
                    mappings[m.group(1)] = (int(m.group(2), 16), int(m.group(4), 16),
                                            m.group(5))
        if self.default is None:
            self.default = len(self.types) - 1

        def names(loc):
            out = []
            for ln in loc["lines"]:        # innermost first
                m = _LINE.match(ln)
                name = m.group(1) if m else ""
                if not name and m and m.group(4):
                    name = m.group(4)
                out.append(name or self.synth(loc, mappings))
            return out or [self.synth(loc, mappings)]

        frames = {lid: names(loc) for lid, loc in locs.items()}
        for s in self.samples:
            leaf_first = [f for lid in s[0] for f in frames[lid]]
            s[0] = tuple(reversed(leaf_first))

    @staticmethod
    def synth(loc, mappings):
        mp = mappings.get(loc["map"])
        if mp and mp[2]:
            start, offset, file = mp
            return f"{file.rsplit('/', 1)[-1]}+0x{loc['addr'] - start + offset:x}"
        return f"0x{loc['addr']:x}"

    def index(self, type_name=None):
        return self.default if type_name is None else self.types.index(type_name)

    def stacks(self, type_name=None, labels=None):
        """{frames root-first: summed value} for one sample type, keeping
        only samples that carry every label of labels ({key: value})."""
        si = self.index(type_name)
        out = {}
        for frames, vals, labs in self.samples:
            if labels and any(labs.get(k) != v for k, v in labels.items()):
                continue
            out[frames] = out.get(frames, 0) + vals[si]
        return {k: v for k, v in out.items() if v}

    def total(self, type_name=None):
        return sum(self.stacks(type_name).values())


def add_stacks(*maps):
    out = {}
    for m in maps:
        for k, v in m.items():
            out[k] = out.get(k, 0) + v
    return {k: v for k, v in out.items() if v}


_TOP = re.compile(r"^\s*(\S+)\s+[0-9.]+%\s+[0-9.]+%\s+(\S+)\s+[0-9.]+%\s+(.+?)\s*$")


def pprof_top_exact(path, sample_index=None):
    """`go tool pprof -top -unit=ns`: {function: (flat, cum)} in integer
    units (ns or counts, no display rounding) and the total."""
    args = ["-top", "-unit=ns", "-nodecount=100000", "-nodefraction=0", "-edgefraction=0"]
    if sample_index:
        args.append(f"-sample_index={sample_index}")
    text = pprof(*args, path)

    def num(x):
        return int(x[:-2]) if x.endswith("ns") else int(x)

    total = num(re.search(r"of (\S+) total", text).group(1))
    rows = {}
    for line in text.splitlines():
        m = _TOP.match(line)
        if m:
            # pprof lists a function's inlined copies as "f (inline)"; sonded
            # names frames by function only (as `sonde top` does).  The
            # programs here have each function either inlined or not, so
            # cum of the merged row is the larger one.
            name = m.group(3).removesuffix(" (inline)")
            f0, c0 = rows.get(name, (0, 0))
            rows[name] = (f0 + num(m.group(1)), max(c0, num(m.group(2))))
    return rows, total


# --------------------------------------------------------------------------
# What sonded answers
# --------------------------------------------------------------------------

def get(s, path, token, expect=200, **params):
    """GET path?params (lists repeat: label=[…]) → body; asserts the status."""
    q = urllib.parse.urlencode(params, doseq=True)
    st, body, hdr = s.request("GET", path + ("?" + q if q else ""), token=token)
    assert st == expect, f"GET {path}?{q} -> {st} {body!r}, wanted {expect}"
    return body


def tree_stacks(tree):
    """{frames root-first (without the root node): self} of a flame tree,
    checking each node's invariants on the way: value = self + children's
    values, children sorted by name, no zero nodes."""
    out = {}

    def walk(node, path):
        kids = node["children"]
        names = [k["name"] for k in kids]
        assert names == sorted(names), f"children of {path or 'root'} not sorted: {names}"
        assert node["value"] == node["self"] + sum(k["value"] for k in kids), (
            f"node {path}: value {node['value']} != self {node['self']} + children")
        assert node["value"] > 0 or not path, f"node {path} has value 0"
        if node["self"] and path:
            out[path] = out.get(path, 0) + node["self"]
        for k in kids:
            walk(k, path + (k["name"],))

    assert tree["name"] == "root"
    walk(tree, ())
    return out


def collapsed_stacks(text):
    """{frames root-first: value} of flamegraph.pl lines."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        m = re.fullmatch(r"(.+) (-?\d+)", line)
        assert m, f"collapsed line {n} is not 'a;b;c VALUE': {line!r}"
        frames = tuple(m.group(1).split(";"))
        assert frames not in out, f"stack repeated in collapsed output: {line!r}"
        out[frames] = int(m.group(2))
    return out


def diff_nodes(tree):
    """{path: (base, comparison, delta, base_self, comparison_self)}."""
    out = {}

    def walk(node, path):
        out[path] = (node["base"], node["comparison"], node["delta"], node["base_self"],
                     node["comparison_self"])
        names = [k["name"] for k in node["children"]]
        assert names == sorted(names), f"diff children of {path or 'root'} not sorted"
        for k in node["children"]:
            walk(k, path + (k["name"],))

    walk(tree, ())
    return out


def inclusive(stacks):
    """{path prefix: inclusive value} from {stack: self}."""
    out = {(): 0}
    for frames, v in stacks.items():
        out[()] += v
        for i in range(1, len(frames) + 1):
            out[frames[:i]] = out.get(frames[:i], 0) + v
    return out


# --------------------------------------------------------------------------
# One server with real uploads, shared by the module
# --------------------------------------------------------------------------

class World:
    """What the module uploaded: sessions by name, their files on disk
    (for go tool pprof) and the reader token."""


@pytest.fixture(scope="module")
def world(sonded_module, record_module, tmp_path_factory):
    s = sonded_module
    w = World()
    w.s = s
    w.read = s.token("reader", "views-test")
    d = tmp_path_factory.mktemp("uploads")
    # Three CPU profiles of different programs for one app (the merge),
    # a 3-thread one (labels), a wall profile (another type).
    recs = {
        "a": ([prog("split"), "2", "0.3"], None),
        "b": ([prog("split"), "--equal", "2", "0.2"], None),
        "c": ([prog("qsort_cmp"), "0.2"], None),
        "threads": ([prog("split"), "3", "0.3"], None),
        "wall": ([prog("split"), "1", "0.2"], "wall"),
    }
    w.files, w.bytes, w.raw, w.sid = {}, {}, {}, {}
    for name, (argv, mode) in recs.items():
        r = record_module(argv, hz=999, mode=mode, output=d / f"{name}.pb.gz")
        w.files[name] = r.output
        w.bytes[name] = r.output.read_bytes()
        w.raw[name] = Raw(r.output)
    merged_agent = s.register_agent("views-merge", instance="host-1", pid=101)
    other_agent = s.register_agent("views-other", instance="host-2", pid=102)
    for name in ("a", "b", "c"):
        w.sid[name] = s.upload(merged_agent, w.bytes[name])
    w.sid["threads"] = s.upload(other_agent, w.bytes["threads"], triggered_by="cpu-trigger")
    w.sid["wall"] = s.upload(other_agent, w.bytes["wall"], types=("wall",),
                             triggered_by="default-sampling")
    # A session whose profile never came.
    w.sid["empty"] = s.create_session(other_agent)["id"]
    return w


# --------------------------------------------------------------------------
# Merged views equal the sum of the uploads
# --------------------------------------------------------------------------

def test_merged_collapsed_is_the_sum_of_the_uploaded_profiles(world):
    w = world
    want = add_stacks(*(w.raw[n].stacks() for n in ("a", "b", "c")))
    text = get(w.s, "/api/v1/views/collapsed", w.read, app="views-merge")
    assert collapsed_stacks(text) == want


def test_merged_flamegraph_is_the_sum_and_root_is_the_total(world):
    w = world
    want = add_stacks(*(w.raw[n].stacks() for n in ("a", "b", "c")))
    total = sum(w.raw[n].total() for n in ("a", "b", "c"))
    fg = get(w.s, "/api/v1/views/flamegraph", w.read, app="views-merge")
    assert (fg["type"], fg["unit"], fg["sessions"]) == ("cpu", "nanoseconds", 3)
    assert fg["total"] == total
    assert fg["tree"]["value"] == total and fg["tree"]["self"] == 0
    assert tree_stacks(fg["tree"]) == want


def test_merged_sample_count_type_is_the_sum(world):
    w = world
    want = add_stacks(*(w.raw[n].stacks("samples") for n in ("a", "b", "c")))
    fg = get(w.s, "/api/v1/views/flamegraph", w.read, app="views-merge", type="samples")
    assert (fg["type"], fg["unit"]) == ("samples", "count")
    assert fg["total"] == sum(want.values())
    assert tree_stacks(fg["tree"]) == want


def test_merged_top_sums_the_functions(world):
    w = world
    stacks = add_stacks(*(w.raw[n].stacks() for n in ("a", "b", "c")))
    flat, cum = {}, {}
    for frames, v in stacks.items():
        flat[frames[-1]] = flat.get(frames[-1], 0) + v
        for f in set(frames):
            cum[f] = cum.get(f, 0) + v
    top = get(w.s, "/api/v1/views/top", w.read, app="views-merge", limit=10000)
    assert top["sessions"] == 3 and top["total"] == sum(stacks.values())
    got = {r["name"]: (r["self"], r["total"]) for r in top["functions"]}
    assert got == {f: (flat.get(f, 0), cum[f]) for f in cum}
    keys = [(-r["self"], -r["total"], r["name"]) for r in top["functions"]]
    assert keys == sorted(keys), "functions not sorted by self, then total"
    assert len(get(w.s, "/api/v1/views/top", w.read, app="views-merge", limit=2)
               ["functions"]) == 2


def test_selection_narrows_by_instance_trigger_and_time(world):
    w = world
    s = w.s
    assert get(s, "/api/v1/views/flamegraph", w.read, app="views-other",
               triggered_by="cpu-trigger")["sessions"] == 1
    # Both sessions of views-other have the sample count type.
    assert get(s, "/api/v1/views/flamegraph", w.read, app="views-other",
               instance="host-2", type="samples")["sessions"] == 2
    get(s, "/api/v1/views/flamegraph", w.read, 404, app="views-merge", instance="host-2")
    now = int(time.time() * 1000)
    get(s, "/api/v1/views/flamegraph", w.read, 404, app="views-merge", to=now - 3600_000)
    fg = get(s, "/api/v1/views/flamegraph", w.read, app="views-merge", **{"from": now - 600_000})
    assert fg["sessions"] == 3


# --------------------------------------------------------------------------
# One session
# --------------------------------------------------------------------------

def test_session_flamegraph_and_collapsed_match_pprof_raw(world):
    w = world
    sid = w.sid["a"]
    fg = get(w.s, f"/api/v1/sessions/{sid}/flamegraph", w.read)
    assert fg["sessions"] == 1 and fg["total"] == w.raw["a"].total()
    assert tree_stacks(fg["tree"]) == w.raw["a"].stacks()
    text = get(w.s, f"/api/v1/sessions/{sid}/collapsed", w.read)
    assert collapsed_stacks(text) == w.raw["a"].stacks()


@pytest.mark.parametrize("type_name", [None, "samples"])
def test_session_top_equals_pprof_top(world, type_name):
    w = world
    want, total = pprof_top_exact(w.files["a"], type_name)
    params = {"limit": 10000}
    if type_name:
        params["type"] = type_name
    top = get(w.s, f"/api/v1/sessions/{w.sid['a']}/top", w.read, **params)
    assert top["total"] == total
    got = {r["name"]: (r["self"], r["total"]) for r in top["functions"]}
    assert got == want


def test_session_view_and_selection_of_that_session_agree(world):
    w = world
    sid = w.sid["b"]
    one = get(w.s, f"/api/v1/sessions/{sid}/flamegraph", w.read)
    sel = get(w.s, "/api/v1/views/flamegraph", w.read, session=sid)
    assert one == sel


# --------------------------------------------------------------------------
# Diff
# --------------------------------------------------------------------------

def test_diff_of_a_profile_with_itself_is_zero_everywhere(world):
    w = world
    sid = w.sid["a"]
    d = get(w.s, "/api/v1/views/diff", w.read, **{"base.session": sid, "cmp.session": sid})
    assert d["base_total"] == d["comparison_total"] == w.raw["a"].total()
    assert d["base_sessions"] == d["comparison_sessions"] == 1
    nodes = diff_nodes(d["tree"])
    assert len(nodes) > 3
    for path, (b, c, delta, bs, cs) in nodes.items():
        assert b == c and delta == 0 and bs == cs, f"node {path}: {b} {c} {delta}"
    assert d["functions"], "no functions in the diff"
    for f in d["functions"]:
        assert f["delta_self"] == 0 and f["delta_total"] == 0, f
        assert f["base_self"] == f["comparison_self"] and f["base_total"] == f["comparison_total"]


def test_diff_of_two_profiles_is_comparison_minus_base_per_frame(world):
    w = world
    d = get(w.s, "/api/v1/views/diff", w.read,
            **{"base.session": w.sid["a"], "cmp.session": w.sid["c"], "limit": 10000})
    base, cmp = w.raw["a"].stacks(), w.raw["c"].stacks()
    assert (d["type"], d["unit"]) == ("cpu", "nanoseconds")
    assert d["base_total"] == sum(base.values())
    assert d["comparison_total"] == sum(cmp.values())
    bi, ci = inclusive(base), inclusive(cmp)
    nodes = diff_nodes(d["tree"])
    assert set(nodes) == set(bi) | set(ci), "diff tree is not the union of both trees"
    for path, (b, c, delta, bs, cs) in nodes.items():
        assert (b, c, delta) == (bi.get(path, 0), ci.get(path, 0),
                                 ci.get(path, 0) - bi.get(path, 0)), f"node {path}"
        assert (bs, cs) == (base.get(path, 0), cmp.get(path, 0)), f"node {path} self"
    for f in d["functions"]:
        assert f["delta_self"] == f["comparison_self"] - f["base_self"], f
        assert f["delta_total"] == f["comparison_total"] - f["base_total"], f


def test_diff_of_selections_by_app(world):
    w = world
    d = get(w.s, "/api/v1/views/diff", w.read,
            **{"base.app": "views-merge", "cmp.app": "views-other", "type": "samples"})
    assert d["base_sessions"] == 3 and d["comparison_sessions"] == 2
    assert d["base_total"] == sum(w.raw[n].total("samples") for n in ("a", "b", "c"))
    assert d["comparison_total"] == sum(w.raw[n].total("samples") for n in ("threads", "wall"))


def test_diff_of_two_sample_types_is_400(world):
    w = world
    body = get(w.s, "/api/v1/views/diff", w.read, 400,
               **{"base.session": w.sid["a"], "cmp.session": w.sid["wall"]})
    assert "cpu" in body["error"] and "wall" in body["error"]
    # The type both have is fine.
    get(w.s, "/api/v1/views/diff", w.read,
        **{"base.session": w.sid["a"], "cmp.session": w.sid["wall"], "type": "samples"})


# --------------------------------------------------------------------------
# Label filters
# --------------------------------------------------------------------------

def test_thread_label_keeps_only_that_threads_samples(world):
    w = world
    sid = w.sid["threads"]
    raw = w.raw["threads"]
    want = raw.stacks(labels={"thread": "split-1"})
    assert want and sum(want.values()) < raw.total(), "recording has no split-1 samples"
    text = get(w.s, f"/api/v1/sessions/{sid}/collapsed", w.read, label="thread:split-1")
    assert collapsed_stacks(text) == want
    fg = get(w.s, f"/api/v1/sessions/{sid}/flamegraph", w.read, label="thread:split-1")
    assert fg["total"] == sum(want.values())
    assert tree_stacks(fg["tree"]) == want


def test_merged_label_filter_over_several_sessions(world):
    w = world
    want = add_stacks(w.raw["a"].stacks(labels={"thread": "split-0"}),
                      w.raw["b"].stacks(labels={"thread": "split-0"}),
                      w.raw["c"].stacks(labels={"thread": "split-0"}))
    fg = get(w.s, "/api/v1/views/flamegraph", w.read, app="views-merge", label="thread:split-0")
    assert fg["sessions"] == 3
    assert tree_stacks(fg["tree"]) == want


def test_every_label_must_match_and_values_may_hold_colons(sonded):
    s = sonded
    read = s.token("reader")
    samples = [
        (["main", "serve", "pay"], [1, 10], {"endpoint": "/api/pay:v2", "thread": "w1"}),
        (["main", "serve", "pay"], [1, 20], {"endpoint": "/api/pay:v2", "thread": "w2"}),
        (["main", "serve", "list"], [1, 40], {"endpoint": "/api/list", "thread": "w1"}),
        (["main", "idle"], [1, 80], {}),
    ]
    sid = s.upload(s.register_agent("labels"), encode_pprof(samples))
    path = f"/api/v1/sessions/{sid}/collapsed"
    assert collapsed_stacks(get(s, path, read, label="endpoint:/api/pay:v2")) == {
        ("main", "serve", "pay"): 30}
    assert collapsed_stacks(get(s, path, read, label=["endpoint:/api/pay:v2", "thread:w2"])) == {
        ("main", "serve", "pay"): 20}
    assert collapsed_stacks(get(s, path, read, label=["thread:w1"])) == {
        ("main", "serve", "pay"): 10, ("main", "serve", "list"): 40}
    fg = get(s, f"/api/v1/sessions/{sid}/flamegraph", read, label="thread:nobody")
    assert fg["total"] == 0 and fg["tree"]["children"] == []
    assert collapsed_stacks(get(s, path, read)) == {
        ("main", "serve", "pay"): 30, ("main", "serve", "list"): 40, ("main", "idle"): 80}


# --------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["thread", ":split-1", "thread:", ""])
def test_bad_label_syntax_is_400(world, label):
    body = get(world.s, f"/api/v1/sessions/{world.sid['a']}/flamegraph", world.read, 400,
               label=label)
    assert "label" in body["error"]


def test_type_not_in_the_profile_is_400_naming_the_types_there(world):
    w = world
    body = get(w.s, f"/api/v1/sessions/{w.sid['a']}/flamegraph", w.read, 400, type="wall")
    assert "wall" in body["error"] and "cpu" in body["error"] and "samples" in body["error"]
    body = get(w.s, "/api/v1/views/top", w.read, 400, app="views-merge", type="alloc")
    assert "cpu" in body["error"]


def test_session_without_profile_or_unknown_is_404(world):
    w = world
    for view in ("flamegraph", "top", "collapsed"):
        body = get(w.s, f"/api/v1/sessions/{w.sid['empty']}/{view}", w.read, 404)
        assert "no profile" in body["error"]
        body = get(w.s, f"/api/v1/sessions/987654/{view}", w.read, 404)
        assert "987654" in body["error"]
    get(w.s, "/api/v1/views/flamegraph", w.read, 404, session=w.sid["empty"])


def test_empty_selection_is_404(world):
    body = get(world.s, "/api/v1/views/flamegraph", world.read, 404, app="no-such-app")
    assert "no profiles match" in body["error"]
    get(world.s, "/api/v1/views/diff", world.read, 404,
        **{"base.app": "no-such-app", "cmp.session": world.sid["a"]})


@pytest.mark.parametrize("path, params, names", [
    ("/api/v1/views/flamegraph", {}, "app"),
    ("/api/v1/views/flamegraph", {"session": "x"}, "session"),
    ("/api/v1/views/flamegraph", {"session": "0"}, "session"),
    ("/api/v1/views/flamegraph", {"app": "views-merge", "from": "yesterday"}, "from"),
    ("/api/v1/views/flamegraph", {"app": "views-merge", "to": "-1"}, "to"),
    ("/api/v1/views/flamegraph", {"app": "views-merge", "from": "2000", "to": "1000"}, "to"),
    ("/api/v1/views/flamegraph", {"app": "views-merge", "triggered_by": "cron"}, "triggered_by"),
    ("/api/v1/views/flamegraph", {"session": "1", "app": "views-merge"}, "app"),
    ("/api/v1/views/top", {"app": "views-merge", "limit": "0"}, "limit"),
    ("/api/v1/views/top", {"app": "views-merge", "limit": "10001"}, "limit"),
    ("/api/v1/views/diff", {"cmp.app": "views-merge"}, "base.app"),
    ("/api/v1/views/diff", {"base.app": "views-merge"}, "cmp.app"),
    ("/api/v1/views/diff", {"base.session": "1", "cmp.session": "1.5"}, "cmp.session"),
    ("/api/v1/sessions/1/top", {"limit": "many"}, "limit"),
])
def test_bad_selection_parameters_are_400_naming_them(world, path, params, names):
    body = get(world.s, path, world.read, 400, **params)
    assert f"'{names}'" in body["error"], body


def test_views_need_a_reader_token(world):
    w = world
    path = f"/api/v1/sessions/{w.sid['a']}/flamegraph"
    assert w.s.request("GET", path, token=None)[0] == 401
    assert w.s.request("GET", path, token=w.s.agent_token())[0] == 403
    for role in ("writer", "admin"):
        assert w.s.request("GET", path, token=w.s.token(role))[0] == 200
