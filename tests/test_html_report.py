"""The counterexample page: deterministic, self-contained, and a diagram that really renders.

The counterexample is a real one: ``InjectedBugRaft`` (real pysyncobj nodes plus
an injected "bug": committing index 9 is a violation) driven through a
partition, dropped messages, a crash, a restart, an isolation and waits.  The
rendering tests hold for whatever pysyncobj release runs them: they compare the
page with the JSON it came from.  The browser tests open the page in headless
Chromium, take a screenshot and check its pixels (the lane, arrow and
violation colours of the diagram), and dump the DOM after the page's script ran.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib

import pytest

from harness.report import html as html_report
from harness.report.counterexample import ReportError, load_report
from harness.report.html import render_html, render_svg, write_html

from cli_machines import InjectedBugRaft

SVG_NS = "{http://www.w3.org/2000/svg}"

STEPS = [
    ("start_cluster", dict(nodes=3, seed=1)),
    ("wait", dict(seconds=2.0)),
    ("partition", dict(side=frozenset({"n1"}))),
    ("write", dict(key="a", via="leader")),
    ("drop_messages", dict(node="n3", direction="send", rate=0.3)),
    ("crash", dict(node="n2")),
    ("wait", dict(seconds=2.0)),
    ("restart", dict(node="n2")),
    ("heal", {}),
    ("wait", dict(seconds=2.0)),
    ("isolate", dict(node="n3")),
    ("wait", dict(seconds=8.0)),
    ("heal", {}),
    ("wait", dict(seconds=8.0)),
    ("write", dict(key="b", via="leader")),
    ("wait", dict(seconds=8.0)),
]


class NinthEntryBug(InjectedBugRaft):
    bug_index = 9


def make_counterexample(directory) -> str:
    """Run the steps above as Hypothesis would (invariants after each step, then teardown)."""
    old = os.environ.get("RAFT_HARNESS_REPORT")
    os.environ["RAFT_HARNESS_REPORT"] = str(directory)
    machine = NinthEntryBug()
    try:
        for name, args in STEPS:
            getattr(machine, name)(**args)
            for inv in machine.invariants:
                inv.function(machine)
    except AssertionError:
        pass
    finally:
        machine.teardown()
        if old is None:
            os.environ.pop("RAFT_HARNESS_REPORT", None)
        else:
            os.environ["RAFT_HARNESS_REPORT"] = old
    path = os.path.join(str(directory), "counterexample.json")
    assert os.path.exists(path), "the injected bug did not fire: no counterexample.json"
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("counterexample")
    make_counterexample(directory)
    doc, _ = load_report(str(directory))
    return directory, doc


def svg_of(doc) -> ET.Element:
    return ET.fromstring(render_svg(doc))


def by_class(root: ET.Element, cls: str):
    return [el for el in root.iter() if cls in (el.get("class") or "").split()]


# --- rendering ---------------------------------------------------------------------------------------
def test_the_counterexample_has_what_the_diagram_shows(report):
    _, doc = report
    assert doc["violations"][0]["invariant"] == "injected_bug"
    assert any(s["messages"] for s in doc["steps"])
    assert any(any(fs for fs in s["faults"].values()) for s in doc["steps"])
    assert any(not n["up"] for s in doc["steps"] for n in s["nodes"])


def test_rendering_is_deterministic(report, tmp_path):
    directory, doc = report
    first = render_html(doc)
    again, _ = load_report(str(directory))
    assert render_html(again) == first
    out = write_html(str(directory), out=str(tmp_path / "a.html"))
    with open(out, encoding="utf-8") as f:
        assert f.read() == first


def test_page_is_self_contained(report):
    page = render_html(report[1])
    assert "<link" not in page
    assert not re.search(r"<script[^>]+src", page)
    assert "@import" not in page
    refs = re.findall(r"""(?<![\w-])(?:src|href|xlink:href)\s*=\s*["']?([^"' >]+)""", page)
    assert refs == [], f"external references: {refs}"
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page)
    # the only URL is the SVG namespace, which is never fetched
    assert set(re.findall(r"https?://[^\"' <>]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_one_lane_per_node_and_an_arrow_per_message(report):
    _, doc = report
    svg = svg_of(doc)
    nodes = sorted({n["id"] for s in doc["steps"] for n in s["nodes"]})
    lanes = sorted(el.get("data-node") for el in by_class(svg, "lane-line"))
    assert lanes == nodes
    arrows = by_class(svg, "msg")
    messages = [m for s in doc["steps"] for m in s["messages"]]
    assert len(arrows) == len(messages) > 0
    assert sorted((a.get("data-src"), a.get("data-dst")) for a in arrows) == \
        sorted((m["src"], m["dst"]) for m in messages)
    for a in arrows:  # the arrow goes from the sender's lane to the receiver's
        assert a.get("marker-end", "").startswith("url(#arrow-")


def test_roles_terms_faults_and_crashes_are_drawn(report):
    _, doc = report
    svg = svg_of(doc)
    states = [(i, n) for i, s in enumerate(doc["steps"]) for n in s["nodes"]]
    bands = by_class(svg, "band")
    assert len(bands) == len(states)
    for i, n in states:
        band = next(b for b in bands if b.get("data-node") == n["id"] and b.get("data-step") == str(i))
        if n["up"]:
            assert f"role-{n['role']}" in band.get("class")
            assert band.get("data-term") == str(n["term"])
        else:
            assert "crashed" in band.get("class")
    terms = {el.text for el in by_class(svg, "term-label")}
    assert {f"T{n['term']}" for _, n in states if n["up"]} <= {t.split(" ")[0] for t in terms}
    faults = [(i, node) for i, s in enumerate(doc["steps"]) for node, fs in s["faults"].items() if fs]
    shaded = sorted((int(el.get("data-step")), el.get("data-node")) for el in by_class(svg, "fault"))
    assert shaded == sorted(faults)
    assert by_class(svg, "fault-partition"), "the partition is not shaded as one"


def test_violating_entries_are_highlighted(report):
    _, doc = report
    v = doc["violations"][0]
    svg = svg_of(doc)
    marks = by_class(svg, "violation-entry")
    assert marks
    for m in marks:
        assert m.get("data-node") in v["nodes"]
        assert int(m.get("data-index")) in v["indexes"]
        assert int(m.get("data-term")) in v["terms"]
    assert by_class(svg, "violation-line")
    page = render_html(doc)
    bad = re.findall(r'<span class="entry bad">(\d+)@(\d+)</span>', page)
    assert bad and all(int(i) in v["indexes"] and int(t) in v["terms"] for i, t in bad)


def test_state_table_has_a_row_per_step(report):
    _, doc = report
    page = render_html(doc)
    table = page[page.index('<table class="states"'):page.index("</table>")]
    assert table.count("<tr data-row=") == len(doc["steps"])
    last = doc["steps"][-1]
    for n in last["nodes"]:
        if n["up"]:
            tail = " ".join(f"{i}@{t}" for i, t in n["tail"])
            assert re.sub(r"<[^>]+>", "", tail) in re.sub(r"<[^>]+>", "", table)


def test_renders_a_report_without_details():
    """A liveness failure names no node, and a step that raised has no end, states or messages."""
    doc = {"format": 1, "machine": "m.M", "network": "fifo", "seed": 3, "pysyncobj_version": "0.3.17",
           "error": "LivenessViolation", "message": "no progress",
           "violations": [{"invariant": "LivenessViolation", "message": "no progress", "nodes": [], "terms": [],
                           "indexes": []}],
           "steps": [{"rule": "start_cluster", "args": {"nodes": 3, "seed": 3}, "start": 0.0, "end": 0.0},
                     {"rule": "partition", "args": {"side": ["n1"]}, "start": 0.0, "end": None}]}
    page = render_html(doc)
    assert html.escape("state.partition(side=['n1'])") in page and "LivenessViolation" in page
    svg = svg_of(doc)
    assert len(by_class(svg, "step-col")) == 2 and by_class(svg, "violation-line")
    assert not by_class(svg, "msg") and not by_class(svg, "violation-entry")


def test_not_a_report(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        load_report(str(tmp_path / "missing"))
    with pytest.raises(ReportError, match="no counterexample.json"):
        load_report(str(tmp_path))
    bad = tmp_path / "counterexample.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="invalid JSON"):
        load_report(str(tmp_path))
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ReportError, match="missing steps"):
        load_report(str(bad))
    bad.write_text(json.dumps({"steps": [], "violations": [], "machine": "m"}))
    with pytest.raises(ReportError, match="no steps"):
        load_report(str(bad))


# --- in a real browser -------------------------------------------------------------------------------
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")


def _run_chromium(tmp_path, *args):
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA, non-interlaced PNG: enough for screenshots."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def _hex(colour: str):
    return bytes(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def colour_stats(png, colours):
    """Per colour: (pixels of exactly that colour, longest horizontal run of them)."""
    width, height, bpp, rows = png
    wanted = {_hex(c): c for c in colours}
    count = dict.fromkeys(colours, 0)
    longest = dict.fromkeys(colours, 0)
    for row in rows:
        run_colour, run = None, 0
        for x in range(0, width * bpp, bpp):
            c = wanted.get(row[x:x + 3])
            if c is not None:
                count[c] += 1
                run = run + 1 if c == run_colour else 1
                longest[c] = max(longest[c], run)
            else:
                run = 0
            run_colour = c
    return {c: (count[c], longest[c]) for c in colours}


def test_screenshot_shows_the_diagram(report, tmp_path):
    directory, doc = report
    page = write_html(str(directory))
    shot = tmp_path / "shot.png"
    result = _run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,720", f"file://{page}")
    assert shot.exists(), f"chromium wrote no screenshot: {result.stderr.decode(errors='replace')[-2000:]}"
    png = read_png(str(shot))
    assert png[:2] == (1280, 720)
    leader, follower = html_report.ROLE_COLOURS["leader"], html_report.ROLE_COLOURS["follower"]
    red, shade = html_report.VIOLATION_COLOUR, html_report.FAULT_COLOURS["partition"]
    arrows = [html_report.MESSAGE_COLOURS["append_entries"], html_report.MESSAGE_COLOURS["next_node_idx"]]
    stats = colour_stats(png, [leader, follower, red, shade] + arrows)
    # Lanes are solid role bands a step column wide or more; badges in the table and legend swatches
    # are far narrower, so a long run of a role colour is a lane.
    assert stats[leader][1] >= 120 and stats[follower][1] >= 120, stats
    # the partition shading behind a lane, as wide as its steps
    assert stats[shade][1] >= 60, stats
    # arrow heads and shafts: many more pixels than the two 10x10 legend swatches
    assert sum(stats[c][0] for c in arrows) > 400, stats
    # the violation's diamond: wider than any red text stroke, the violation line or the legend swatch
    assert stats[red][1] >= 15, stats
    # a blank page has none of it
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    shot2 = tmp_path / "blank.png"
    _run_chromium(tmp_path, f"--screenshot={shot2}", "--window-size=320,200", f"file://{blank}")
    assert not any(n for n, _ in colour_stats(read_png(str(shot2)), [leader, follower, red, shade]).values())


def test_dumped_dom_has_lanes_and_arrows(report, tmp_path):
    directory, doc = report
    page = write_html(str(directory))
    result = _run_chromium(tmp_path, "--dump-dom", f"file://{page}")
    dom = result.stdout.decode("utf-8", errors="replace")
    assert '<svg' in dom and 'id="spacetime"' in dom, result.stderr.decode(errors="replace")[-2000:]
    nodes = {n["id"] for s in doc["steps"] for n in s["nodes"]}
    messages = sum(len(s["messages"]) for s in doc["steps"])
    assert len(re.findall(r'class="lane-line"', dom)) == len(nodes)
    assert len(re.findall(r'class="msg kind-', dom)) == messages
    assert len(re.findall(r'class="violation-entry"', dom)) >= 1
    assert dom.count("<tr data-row=") == len(doc["steps"])


# --- a stream checker's counterexample: the event that broke the property, on its lane ------------
def _stream_counterexample(directory):
    """A fifo RaftMachine run under candidate_gives_vote (a candidate also votes for a rival of its term)
    that the stream checker stops at the second vote; the first seed that does, of a few."""
    from harness.adapter.patching import inject
    from harness.fuzz.machine import RaftMachine

    class Fifo(RaftMachine):
        network = "fifo"

    old = os.environ.get("RAFT_HARNESS_REPORT")
    os.environ["RAFT_HARNESS_REPORT"] = str(directory)
    try:
        with inject("candidate_gives_vote"):
            for seed in range(30):
                machine = Fifo()
                try:
                    machine.start_cluster(nodes=3, seed=seed)
                    for _ in range(6):
                        machine.wait(seconds=2.0)
                        machine.raft_safety()
                except AssertionError:
                    return load_report(str(directory))[0]
                finally:
                    machine.cluster.close()
    finally:
        if old is None:
            os.environ.pop("RAFT_HARNESS_REPORT", None)
        else:
            os.environ["RAFT_HARNESS_REPORT"] = old
    pytest.fail("candidate_gives_vote broke nothing in 30 seeds")


def test_a_stream_violation_names_its_event_in_the_json_and_on_the_diagram(tmp_path):
    doc = _stream_counterexample(tmp_path)
    v = next(v for v in doc["violations"] if v["invariant"] == "vote_safety")
    assert isinstance(v["at"], float) and v["node"] and v["handling"].startswith("request_vote #"), v
    [mark] = [m for m in by_class(svg_of(doc), "violation-event") if m.get("data-node") == v["node"]
              and float(m.get("data-at")) == pytest.approx(v["at"], abs=1e-6)]
    step = doc["steps"][int(mark.get("data-step"))]
    assert step["start"] <= v["at"] <= step["end"], "the marker is not in the step the event happened in"
    assert f"handling {html.escape(v['handling'])}" in render_html(doc)
    bad = dict(doc, violations=[dict(v, at="soon")])
    with pytest.raises(ReportError, match="'at' must be a number"):
        render_html(bad)


def test_the_page_names_the_bug_and_shows_the_minimised_steps(report, tmp_path):
    """After triage: the label, the minimised runnable steps and pysyncobj's own log are on the page."""
    import json as _json
    import shutil as _shutil

    from harness.report.counterexample import annotate

    directory = tmp_path / "named"
    _shutil.copytree(report[0], directory)
    before = render_html(_json.loads((directory / "counterexample.json").read_text()))
    assert "known: finding 3" not in before and "Minimised steps" not in before
    annotate(str(directory), triage={"label": "known: finding 3", "note": ""},
             minimized={"original": 9, "minimized": 4, "complete": True,
                        "code": "state = FifoRaft()\nstate.start_cluster(nodes=3, seed=1)\nstate.teardown()"},
             pysyncobj_log={"lines": [{"t": 1.5, "node": "n2", "level": "CRITICAL",
                                       "message": "truncating already-applied log entries"}], "critical": []})
    page = render_html(_json.loads((directory / "counterexample.json").read_text()))
    assert '<p class="verdict"><b>known: finding 3</b>' in page
    assert "Minimised steps (9 &rarr; 4, 1-minimal)" in page and "state.start_cluster(nodes=3, seed=1)" in page
    assert "t=1.5000 n2 CRITICAL truncating already-applied log entries" in page
