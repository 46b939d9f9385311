"""A self-contained HTML page for one counterexample (``counterexample.json`` -> ``report.html``).

The page holds the shrunk steps beside a space-time diagram drawn here, in
Python, as inline SVG: one lane per node, its role (colour) and term (label)
as observed after each step, messages as arrows from their send to their
delivery in virtual time, installed filters (partitions, drops, holds...)
and crashes shaded, the log entries named by the violation marked where
they appeared, and, for a stream checker's violation, the event that broke the
property circled at its virtual time on its node's lane.  Below it, a table of every node's term, role, commit index
and log tail after every step.  No network fetches: CSS, the few lines of
JavaScript and the SVG are inline, and the output depends only on the JSON
(the same file renders to the same bytes).

Each step gets a column whose width grows with the messages delivered in it
(virtual time is linear inside a column), so a 0.25 s step with thirty
messages stays readable next to an 8 s ``wait`` with none.
"""
from __future__ import annotations

import dataclasses
import html
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness.report.assets import CSS, JS
from harness.report.counterexample import REPORT_HTML, load_report, validate

# --- geometry (px) -------------------------------------------------------------------------------
LEFT = 12          # margin before the first step (node labels are a separate SVG)
LABELS_W = 52
RIGHT = 150        # room for the violation label
TOP = 58           # step numbers and times
BOTTOM = 24
LANE_H = 64
BAND_H = 16
STEP_MIN_W = 64
PX_PER_MSG = 8
STEP_MAX_W = 520

# --- colours ---------------------------------------------------------------------------------------
ROLE_COLOURS = {"leader": "#f2b705", "candidate": "#17becf", "follower": "#8fb3e0"}
READONLY_COLOUR = "#c9d6e8"
CRASHED_COLOUR = "#6b6b6b"
VIOLATION_COLOUR = "#d62728"
FAULT_COLOURS = {"partition": "#f6c9bf", "filter": "#fbe7c6"}
MESSAGE_COLOURS = {
    "append_entries": "#1f5fbf",
    "request_vote": "#7b3fb0",
    "response_vote": "#a678d1",
    "next_node_idx": "#2a9d3a",
    "apply_command": "#e07b00",
    "apply_command_response": "#c2569e",
}
OTHER_MESSAGE_COLOUR = "#777777"
_PARTITION_FILTERS = ("PartitionFilter", "IsolationFilter")


# --- helpers ---------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _f(x: float) -> str:
    """Coordinates with one decimal, no trailing noise: deterministic text."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _node_key(node_id: str) -> Tuple[str, int, str]:
    m = re.fullmatch(r"([A-Za-z_]*)(\d+)", node_id)
    return (m.group(1), int(m.group(2)), "") if m else (node_id, 0, node_id)


def step_code(step: Dict[str, Any]) -> str:
    """A recorded step as the line Hypothesis prints: ``state.rule(arg=value, ...)``."""
    if step.get("code"):
        return str(step["code"])
    args = ", ".join(f"{k}={v!r}" for k, v in sorted((step.get("args") or {}).items()))
    return f"state.{step['rule']}({args})"


def _message_colour(kind: str) -> str:
    return MESSAGE_COLOURS.get(kind, OTHER_MESSAGE_COLOUR)


def _css_ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


@dataclasses.dataclass
class _Column:
    index: int
    start: float
    end: float
    x: float
    w: float

    def at(self, t: float) -> float:
        if self.end <= self.start:
            return self.x + self.w / 2
        frac = (t - self.start) / (self.end - self.start)
        return self.x + self.w * min(1.0, max(0.0, frac))


@dataclasses.dataclass
class _Highlight:
    """What the violations point at: nodes, and log entries (index, allowed terms or None for any)."""

    nodes: frozenset
    entries: Dict[str, Dict[int, Optional[frozenset]]]

    def bad(self, node: str, index: int, term: int) -> bool:
        terms = self.entries.get(node, {}).get(index, False)
        return terms is None or (terms is not False and term in terms)


def _highlight(doc: Dict[str, Any]) -> _Highlight:
    nodes, entries = set(), {}
    for v in doc.get("violations") or ():
        vnodes = [str(n) for n in v.get("nodes") or ()]
        nodes.update(vnodes)
        terms = frozenset(int(t) for t in v.get("terms") or ()) or None
        for n in vnodes:
            for idx in v.get("indexes") or ():
                per = entries.setdefault(n, {})
                old = per.get(int(idx), frozenset())
                per[int(idx)] = None if (terms is None or old is None) else old | terms
    return _Highlight(frozenset(nodes), entries)


def _columns(steps: Sequence[Dict[str, Any]]) -> List[_Column]:
    cols, x = [], float(LEFT)
    for i, s in enumerate(steps):
        msgs = s.get("messages") or []
        start = float(s.get("start") or 0.0)
        end = s.get("end")
        if end is None:
            end = max([start] + [float(m.get("delivered") or start) for m in msgs])
        end = max(float(end), start)
        w = float(min(STEP_MAX_W, STEP_MIN_W + PX_PER_MSG * len(msgs)))
        cols.append(_Column(i, start, end, x, w))
        x += w
    return cols


def _node_ids(steps: Sequence[Dict[str, Any]]) -> List[str]:
    seen = set()
    for s in steps:
        for n in s.get("nodes") or ():
            seen.add(str(n["id"]))
        for m in s.get("messages") or ():
            seen.add(str(m.get("src")))
            seen.add(str(m.get("dst")))
        seen.update(str(n) for n in (s.get("faults") or {}))
    seen.discard("None")
    return sorted(seen, key=_node_key)


def _fault_class(filters: Sequence[str]) -> str:
    return "partition" if any(str(f).startswith(_PARTITION_FILTERS) for f in filters) else "filter"


# --- the diagram -----------------------------------------------------------------------------------
def render_svg(doc: Dict[str, Any]) -> str:
    """The space-time diagram of ``doc``'s steps as an ``<svg>`` element (deterministic text)."""
    steps = doc["steps"]
    cols = _columns(steps)
    nodes = _node_ids(steps)
    lane = {n: TOP + LANE_H * i + LANE_H / 2 for i, n in enumerate(nodes)}
    hl = _highlight(doc)
    width = (cols[-1].x + cols[-1].w if cols else LEFT) + RIGHT
    height = TOP + LANE_H * max(1, len(nodes)) + BOTTOM
    kinds = sorted({str(m.get("kind")) for s in steps for m in s.get("messages") or ()})
    out: List[str] = []
    w = out.append
    w(f'<svg xmlns="http://www.w3.org/2000/svg" id="spacetime" class="spacetime" width="{_f(width)}" '
      f'height="{_f(height)}" viewBox="0 0 {_f(width)} {_f(height)}" font-family="sans-serif" font-size="11">')
    w("<defs>")
    w('<pattern id="hatch-crashed" patternUnits="userSpaceOnUse" width="6" height="6" '
      'patternTransform="rotate(45)"><rect width="6" height="6" fill="#9a9a9a"/>'
      f'<rect width="3" height="6" fill="{CRASHED_COLOUR}"/></pattern>')
    for kind in kinds:
        w(f'<marker id="arrow-{_css_ident(kind)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
          f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
          f'fill="{_message_colour(kind)}"/></marker>')
    w("</defs>")
    w(f'<rect x="0" y="0" width="{_f(width)}" height="{_f(height)}" fill="#ffffff"/>')

    # step columns, numbers and start times
    lanes_top, lanes_bottom = TOP, TOP + LANE_H * max(1, len(nodes))
    w('<g class="columns">')
    for c, s in zip(cols, steps):
        fill = "#f7f7f7" if c.index % 2 == 0 else "#eeeeee"
        w(f'<rect class="step-col" id="col-{c.index}" data-step="{c.index}" x="{_f(c.x)}" y="{_f(lanes_top - 22)}" '
          f'width="{_f(c.w)}" height="{_f(lanes_bottom - lanes_top + 22)}" fill="{fill}">'
          f'<title>#{c.index} {_e(step_code(s))}  t={c.start:.3f}..{c.end:.3f}</title></rect>')
        w(f'<line x1="{_f(c.x)}" y1="{_f(lanes_top - 40)}" x2="{_f(c.x)}" y2="{_f(lanes_bottom)}" '
          f'stroke="#d0d0d0" stroke-width="1"/>')
        w(f'<text class="step-label" x="{_f(c.x + c.w / 2)}" y="{_f(lanes_top - 30)}" text-anchor="middle" '
          f'font-weight="bold">#{c.index}</text>')
        w(f'<text class="step-time" x="{_f(c.x + 2)}" y="{_f(lanes_top - 10)}" fill="#666" font-size="9">'
          f't={c.start:.2f}</text>')
    w("</g>")

    # filters and crashes, per node and step
    w('<g class="faults">')
    for c, s in zip(cols, steps):
        for n in sorted((s.get("faults") or {}), key=_node_key):
            filters = s["faults"][n] or []
            if not filters or n not in lane:
                continue
            cls = _fault_class(filters)
            w(f'<rect class="fault fault-{cls}" data-node="{_e(n)}" data-step="{c.index}" x="{_f(c.x)}" '
              f'y="{_f(lane[n] - LANE_H / 2 + 3)}" width="{_f(c.w)}" height="{_f(LANE_H - 6)}" '
              f'fill="{FAULT_COLOURS[cls]}"><title>{_e(n)} after #{c.index}: {_e("; ".join(map(str, filters)))}'
              f'</title></rect>')
    w("</g>")

    # lanes: baseline, then one band per step coloured by role, term and commit index labels
    w('<g class="lanes">')
    for n in nodes:
        y = lane[n]
        w(f'<line class="lane-line" data-node="{_e(n)}" x1="{LEFT}" y1="{_f(y)}" x2="{_f(width - RIGHT)}" '
          f'y2="{_f(y)}" stroke="#bbbbbb" stroke-width="1" stroke-dasharray="3,3"/>')
    for n in nodes:
        y = lane[n]
        last_term, last_commit, last_inc = None, None, None
        for c, s in zip(cols, steps):
            st = next((x for x in s.get("nodes") or () if str(x["id"]) == n), None)
            if st is None:
                last_term = last_commit = None
                continue
            top = y - BAND_H / 2
            if not st.get("up", True):
                w(f'<rect class="band crashed" data-node="{_e(n)}" data-step="{c.index}" x="{_f(c.x)}" '
                  f'y="{_f(top)}" width="{_f(c.w)}" height="{BAND_H}" fill="url(#hatch-crashed)">'
                  f'<title>{_e(n)} crashed after #{c.index}</title></rect>')
                last_term = last_commit = None
                last_inc = st.get("incarnation", last_inc)
                continue
            role = str(st.get("role"))
            fill = ROLE_COLOURS.get(role, "#cccccc")
            if role == "follower" and not st.get("voter", True):
                fill = READONLY_COLOUR
            term, commit, inc = st.get("term"), st.get("commit_index"), st.get("incarnation")
            w(f'<rect class="band role-{_css_ident(role)}" data-node="{_e(n)}" data-step="{c.index}" '
              f'data-term="{_e(term)}" x="{_f(c.x)}" y="{_f(top)}" width="{_f(c.w)}" height="{BAND_H}" '
              f'fill="{fill}"><title>{_e(n)} after #{c.index}: {_e(role)}, term {_e(term)}, commit {_e(commit)}, '
              f'log {_e(st.get("first_index"))}..{_e(st.get("last_index"))}, incarnation {_e(inc)}</title></rect>')
            restarted = last_inc is not None and inc != last_inc
            if term != last_term or restarted:
                w(f'<text class="term-label" x="{_f(c.x + 3)}" y="{_f(top - 3)}" font-size="10" fill="#333">'
                  f'T{_e(term)}{" &#183; restarted" if restarted else ""}</text>')
            if commit != last_commit:
                w(f'<text class="commit-label" x="{_f(c.x + 3)}" y="{_f(top + BAND_H + 10)}" font-size="9" '
                  f'fill="#555">c{_e(commit)}</text>')
            last_term, last_commit, last_inc = term, commit, inc
    w("</g>")

    # messages: an arrow from (sent, src) to (delivered, dst)
    w('<g class="messages">')
    for k, s in enumerate(steps):
        for m in s.get("messages") or ():
            src, dst, kind = str(m.get("src")), str(m.get("dst")), str(m.get("kind"))
            if src not in lane or dst not in lane:
                continue
            delivered = float(m.get("delivered") if m.get("delivered") is not None else cols[k].end)
            sent = float(m.get("sent") if m.get("sent") is not None else delivered)
            j = k
            while j > 0 and cols[j].start > sent:
                j -= 1
            x1, x2 = cols[j].at(sent), cols[k].at(delivered)
            down = lane[dst] > lane[src]
            y1 = lane[src] + (BAND_H / 2 if down else -BAND_H / 2)
            y2 = lane[dst] - (BAND_H / 2 + 1 if down else -(BAND_H / 2 + 1))
            colour = _message_colour(kind)
            w(f'<line class="msg kind-{_css_ident(kind)}" data-step="{k}" data-src="{_e(src)}" data-dst="{_e(dst)}" '
              f'x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" stroke="{colour}" stroke-width="1.4" '
              f'marker-end="url(#arrow-{_css_ident(kind)})"><title>{_e(src)} &#8594; {_e(dst)} {_e(kind)} '
              f'term={_e(m.get("term"))} sent t={sent:.4f} delivered t={delivered:.4f} (#{k})</title></line>')
    w("</g>")

    # the violation: the offending entries where they appeared, and a line at the end
    w('<g class="violation">')
    for n in sorted(hl.entries, key=_node_key):
        if n not in lane:
            continue
        for idx in sorted(hl.entries[n]):
            shown = None
            for c, s in zip(cols, steps):
                st = next((x for x in s.get("nodes") or () if str(x["id"]) == n), None)
                if st is None or not st.get("up", True):
                    shown = None
                    continue
                term = next((int(e[1]) for e in st.get("tail") or () if int(e[0]) == idx), None)
                if term is None or term == shown:
                    continue
                shown = term
                if not hl.bad(n, idx, term):
                    continue
                r = 10
                cx, cy = c.x + c.w - r, lane[n]
                w(f'<g class="violation-entry" data-node="{_e(n)}" data-index="{idx}" data-term="{term}" '
                  f'data-step="{c.index}"><path d="M{_f(cx)},{_f(cy - r)} L{_f(cx + r)},{_f(cy)} '
                  f'L{_f(cx)},{_f(cy + r)} L{_f(cx - r)},{_f(cy)} z" fill="{VIOLATION_COLOUR}" stroke="#ffffff" '
                  f'stroke-width="1"/><text x="{_f(cx + r)}" y="{_f(cy - r - 2)}" text-anchor="end" '
                  f'font-size="10" '
                  f'font-weight="bold" fill="{VIOLATION_COLOUR}">{idx}@{term}</text>'
                  f'<title>{_e(n)} holds entry {idx}@{term} after #{c.index}</title></g>')
    # the events that broke the properties (stream checkers): a marker at that time on that node's lane
    marked = set()
    for v in doc.get("violations") or ():
        node, at = v.get("node"), v.get("at")
        if node is None or at is None or str(node) not in lane or not cols:
            continue
        node, at = str(node), float(at)
        col = next((c for c in reversed(cols) if c.start <= at), cols[0])
        cx, cy = col.at(at), lane[node]
        if (node, _f(cx)) in marked:
            continue
        marked.add((node, _f(cx)))
        handling = f" handling {v['handling']}" if v.get("handling") else ""
        w(f'<g class="violation-event" data-node="{_e(node)}" data-at="{at:.6f}" data-step="{col.index}">'
          f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="7" fill="none" stroke="{VIOLATION_COLOUR}" stroke-width="3"/>'
          f'<line x1="{_f(cx)}" y1="{_f(cy - BAND_H)}" x2="{_f(cx)}" y2="{_f(cy + BAND_H)}" '
          f'stroke="{VIOLATION_COLOUR}" stroke-width="2"/>'
          f'<title>{_e(v.get("invariant"))} broken on {_e(node)} at t={at:.6f}{_e(handling)}: '
          f'{_e(v.get("message"))}</title></g>')
    if cols:
        end_x = cols[-1].x + cols[-1].w
        names = sorted({str(v.get("invariant")) for v in doc.get("violations") or ()}) or [str(doc.get("error"))]
        w(f'<line class="violation-line" x1="{_f(end_x)}" y1="{_f(lanes_top - 40)}" x2="{_f(end_x)}" '
          f'y2="{_f(lanes_bottom)}" stroke="{VIOLATION_COLOUR}" stroke-width="3"/>')
        for i, name in enumerate(names):
            w(f'<text class="violation-label" x="{_f(end_x + 6)}" y="{_f(lanes_top - 28 + 13 * i)}" '
              f'font-weight="bold" fill="{VIOLATION_COLOUR}">&#10007; {_e(name)}</text>')
    w("</g>")
    w("</svg>")
    return "\n".join(out)


def render_lane_labels(doc: Dict[str, Any]) -> str:
    """Node names in a narrow SVG of the diagram's height, kept in view while the diagram scrolls."""
    nodes = _node_ids(doc["steps"])
    hl = _highlight(doc)
    height = TOP + LANE_H * max(1, len(nodes)) + BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lane-labels" width="{LABELS_W}" height="{_f(height)}" '
           f'viewBox="0 0 {LABELS_W} {_f(height)}" font-family="sans-serif">']
    for i, n in enumerate(nodes):
        y = TOP + LANE_H * i + LANE_H / 2
        colour = VIOLATION_COLOUR if n in hl.nodes else "#222222"
        out.append(f'<text class="node-label" x="{LABELS_W - 8}" y="{_f(y + 4)}" text-anchor="end" font-size="13" '
                   f'font-weight="bold" fill="{colour}">{_e(n)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# --- the page --------------------------------------------------------------------------------------


def _legend(doc: Dict[str, Any]) -> str:
    kinds = sorted({str(m.get("kind")) for s in doc["steps"] for m in s.get("messages") or ()})
    items = [(ROLE_COLOURS["leader"], "leader"), (ROLE_COLOURS["candidate"], "candidate"),
             (ROLE_COLOURS["follower"], "follower"), (READONLY_COLOUR, "read-only follower"),
             (CRASHED_COLOUR, "crashed"), (FAULT_COLOURS["partition"], "partitioned / isolated"),
             (FAULT_COLOURS["filter"], "other filters (drop, delay, hold...)"),
             (VIOLATION_COLOUR, "entries of the violation; circled: the event that broke it")]
    items += [(_message_colour(k), f"&#8594; {_e(k)}") for k in kinds]
    return '<div class="legend">' + "".join(
        f'<span><span class="sw" style="background:{c}"></span>{label}</span>' for c, label in items) + "</div>"


def _node_cell(st: Optional[Dict[str, Any]], node: str, hl: _Highlight) -> str:
    if st is None:
        return '<td class="node absent">&#8212;</td>'
    if not st.get("up", True):
        return (f'<td class="node"><span class="role role-crashed">crashed</span> '
                f'inc {_e(st.get("incarnation"))}</td>')
    role = str(st.get("role"))
    entries = []
    for e in st.get("tail") or ():
        idx, term = int(e[0]), int(e[1])
        cls = "entry bad" if hl.bad(node, idx, term) else "entry"
        entries.append(f'<span class="{cls}">{idx}@{term}</span>')
    ro = "" if st.get("voter", True) else " (read-only)"
    return (f'<td class="node"><span class="role role-{_css_ident(role)}">{_e(role)}</span>{ro} '
            f'T{_e(st.get("term"))} c{_e(st.get("commit_index"))}<br>'
            f'log {_e(st.get("first_index"))}..{_e(st.get("last_index"))}: {" ".join(entries) or "&#8212;"}</td>')


def _state_table(doc: Dict[str, Any], nodes: Sequence[str], hl: _Highlight) -> str:
    rows = ['<table class="states" id="states"><thead><tr><th>#</th><th>step</th><th>virtual time</th>'
            + "".join(f"<th>{_e(n)}</th>" for n in nodes) + "<th>filters installed</th></tr></thead><tbody>"]
    for i, s in enumerate(doc["steps"]):
        by_id = {str(x["id"]): x for x in s.get("nodes") or ()}
        end = s.get("end")
        span = f'{float(s.get("start") or 0):.3f}..{float(end):.3f}' if end is not None else \
            f'{float(s.get("start") or 0):.3f}..'
        faults = "<br>".join(f"{_e(n)}: {_e(', '.join(map(str, fs)))}"
                             for n, fs in sorted((s.get("faults") or {}).items(), key=lambda kv: _node_key(kv[0]))
                             if fs)
        rows.append(f'<tr data-row="{i}"><td>{i}</td><td class="code">{_e(step_code(s))}</td><td>{span}</td>'
                    + "".join(_node_cell(by_id.get(n), n, hl) for n in nodes)
                    + f'<td class="faults">{faults}</td></tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _patched_with(doc: Dict[str, Any]) -> str:
    """" patched with a, b" when the recording ran on patched pysyncobj (known fixes, injected bugs)."""
    patches = doc.get("patches") or ()
    return f" patched with {', '.join(map(str, patches))}" if patches else ""


def _verdict(doc: Dict[str, Any]) -> List[str]:
    """Which bug this is (triage) and the minimised steps, when the campaign named it."""
    triage, small = doc.get("triage") or {}, doc.get("minimized") or {}
    out = []
    if triage:
        out.append(f'<p class="verdict"><b>{_e(triage.get("label"))}</b>'
                   + (f' <span class="meta">({_e(triage.get("note"))})</span>' if triage.get("note") else "") + "</p>")
    if small.get("code"):
        proof = "1-minimal" if small.get("complete") else "time bound reached: smaller, not proven 1-minimal"
        out.append(f"<h2>Minimised steps ({_e(small.get('original'))} &rarr; {_e(small.get('minimized'))}, "
                   f"{_e(proof)})</h2><pre>{_e(small['code'])}</pre>")
    return out


def render_html(doc: Dict[str, Any]) -> str:
    """The whole self-contained page for a counterexample document."""
    validate(doc)
    steps = doc["steps"]
    nodes = _node_ids(steps)
    hl = _highlight(doc)
    violations = doc.get("violations") or []
    names = sorted({str(v.get("invariant")) for v in violations}) or [str(doc.get("error"))]
    title = f"{doc.get('error') or 'Violation'}: {', '.join(names)}"
    end = max((float(s["end"]) for s in steps if s.get("end") is not None), default=0.0)
    n_msgs = sum(len(s.get("messages") or ()) for s in steps)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<h1><span class="bad">&#10007;</span> {_e(title)}</h1>',
        f'<div class="meta">machine <code>{_e(doc.get("machine"))}</code> &middot; pysyncobj '
        f'{_e(doc.get("pysyncobj_version"))}{_e(_patched_with(doc))} &middot; network {_e(doc.get("network"))} &middot; seed '
        f'{_e(doc.get("seed"))} &middot; {len(steps)} steps &middot; {n_msgs} messages &middot; '
        f'{end:.3f} virtual seconds &middot; replay: <code>raft-harness replay &lt;this directory&gt;</code></div>',
        '<ul class="violations">',
    ]
    for v in violations:
        extra = []
        for key in ("nodes", "indexes", "terms"):
            if v.get(key):
                extra.append(f"{key} {', '.join(map(str, v[key]))}")
        if v.get("at") is not None:
            extra.append(f"at t={float(v['at']):.6f}" + (f" on {v['node']}" if v.get("node") else "")
                         + (f" handling {v['handling']}" if v.get("handling") else ""))
        parts.append(f'<li><b>{_e(v.get("invariant"))}</b>: {_e(v.get("message"))}'
                     + (f' <span class="meta">({_e("; ".join(extra))})</span>' if extra else "") + "</li>")
    parts.append("</ul>")
    parts.extend(_verdict(doc))
    parts.append('<div class="main"><div class="steps"><ol id="steps">')
    for i, s in enumerate(steps):
        end_s = f'{float(s["end"]):.2f}' if s.get("end") is not None else "?"
        parts.append(f'<li data-row="{i}"><span class="t">#{i} t={float(s.get("start") or 0):.2f}..{end_s} '
                     f'&middot; {len(s.get("messages") or ())} msgs</span><br>{_e(step_code(s))}</li>')
    parts.append("</ol></div>")
    parts.append(f'<div class="diagram-wrap">{render_lane_labels(doc)}<div class="diagram">{render_svg(doc)}</div>'
                 '</div></div>')
    parts.append(_legend(doc))
    parts.append('<p class="meta">Roles, terms (T) and commit indexes (c) as observed at the end of each step; '
                 "arrows run from a message's send to its delivery; column widths follow the number of "
                 "messages, virtual time is linear inside a column.</p>")
    parts.append("<h2>Node state after each step</h2>")
    parts.append(_state_table(doc, nodes, hl))
    parts.append("<h2>Steps as code</h2>")
    parts.append("<pre>" + _e("\n".join(step_code(s) for s in steps if s.get("rule") != "teardown")
                              + "\nstate.teardown()") + "</pre>")
    if doc.get("details"):
        parts.append("<details><summary>Failure details</summary><pre>" + _e(doc["details"]) + "</pre></details>")
    log = doc.get("pysyncobj_log") or {}
    if log.get("lines") or log.get("critical"):
        text = "\n".join(f"t={float(x.get('t') or 0):.4f} {x.get('node')} {x.get('level')} {x.get('message')}"
                         for x in list(log.get("critical") or []) + list(log.get("lines") or []))
        parts.append("<details><summary>What pysyncobj logged</summary><pre>" + _e(text) + "</pre></details>")
    parts.append(f"<script>{JS}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str, out: Optional[str] = None) -> str:
    """Render the report at ``path`` (directory or JSON) to ``report.html`` beside it; returns the HTML path."""
    doc, json_path = load_report(path)
    target = out or os.path.join(os.path.dirname(os.path.abspath(json_path)), REPORT_HTML)
    text = render_html(doc)
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, target)
    return target
