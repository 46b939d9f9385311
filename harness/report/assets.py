"""The page's fixed style and script, kept apart from the code that draws the diagram.

Both are inlined into every ``report.html`` (no network fetches), so the page is one file.
"""

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; margin: 0 0 6px 0; }
h1 .bad { color: #d62728; }
h2 { font-size: 16px; margin: 22px 0 8px 0; }
.verdict { font-size: 15px; padding: 6px 10px; background: #fff3cd; border-left: 4px solid #d62728; }
.meta { color: #555; font-size: 13px; margin-bottom: 8px; }
.meta code { background: #f2f2f2; padding: 1px 4px; }
ul.violations { margin: 4px 0 12px 0; padding-left: 20px; font-size: 13px; }
ul.violations li b { color: #d62728; }
.main { display: flex; gap: 16px; align-items: flex-start; }
.steps { flex: 0 0 300px; max-height: 80vh; overflow-y: auto; border: 1px solid #ddd; font-size: 12px; }
.steps ol { list-style: none; margin: 0; padding: 0; }
.steps li { padding: 3px 6px; border-bottom: 1px solid #eee; cursor: pointer; font-family: monospace;
  overflow-wrap: anywhere; }
.steps li .t { color: #888; font-size: 10px; }
.steps li.hl, tr.hl td { background: #fff3bf; }
.diagram-wrap { flex: 1 1 auto; min-width: 0; display: flex; border: 1px solid #ddd; }
.lane-labels { flex: 0 0 auto; }
.diagram { flex: 1 1 auto; min-width: 0; overflow-x: auto; }
.spacetime .step-col.hl { fill: #fff3bf; }
.legend { font-size: 12px; margin: 8px 0; display: flex; flex-wrap: wrap; gap: 12px; }
.legend span.sw { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle;
  border: 1px solid #999; }
table.states { border-collapse: collapse; font-size: 12px; }
table.states th, table.states td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; text-align: left; }
table.states th { background: #f4f4f4; position: sticky; top: 0; }
table.states td.code { font-family: monospace; white-space: nowrap; }
table.states td.node { font-family: monospace; white-space: nowrap; }
.role { display: inline-block; padding: 0 4px; border-radius: 3px; font-size: 11px; }
.role-leader { background: #f2b705; } .role-candidate { background: #17becf; }
.role-follower { background: #8fb3e0; } .role-crashed { background: #6b6b6b; color: #fff; }
.entry.bad { background: #d62728; color: #fff; font-weight: bold; padding: 0 2px; border-radius: 2px; }
td.faults { font-family: monospace; font-size: 11px; color: #8a3b12; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
"""

JS = """
(function () {
  var diagram = document.querySelector('.diagram');
  if (diagram) { diagram.scrollLeft = diagram.scrollWidth; }  // the end, where the violation is
  function mark(step, on) {
    var col = document.getElementById('col-' + step);
    if (col) { col.classList.toggle('hl', on); }
    document.querySelectorAll('[data-row="' + step + '"]').forEach(function (el) { el.classList.toggle('hl', on); });
  }
  document.querySelectorAll('[data-row]').forEach(function (el) {
    var step = el.getAttribute('data-row');
    el.addEventListener('mouseenter', function () { mark(step, true); });
    el.addEventListener('mouseleave', function () { mark(step, false); });
    el.addEventListener('click', function () {
      var col = document.getElementById('col-' + step);
      if (col && col.scrollIntoView) { col.scrollIntoView({block: 'nearest', inline: 'center'}); }
    });
  });
})();
"""
