"""``clips.html``: the drawn clips of every manifest in one table, with their previews, sortable by
every score column (and duration, height) and filterable by dataset, category and status (kept,
or the reject stage and reason).

Plain HTML with a short inline script and no library or CDN: reports are opened on machines
without internet. Sorting reads each cell's ``data-v`` (a number; missing values sort last), so
what is shown may be rounded without changing the order.
"""

from __future__ import annotations

from html import escape
from typing import Any

from curation.stats.cards import CARD_CSS, caption_text, frame_range, number, preview, reject_text

INDEX_FILE = "clips.html"

_CSS = """
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 1.5rem; }
table.clip-index { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.clip-index th, .clip-index td { padding: .25rem .5rem; border-bottom: 1px solid #eee; vertical-align: top; text-align: left; }
.clip-index td.num { text-align: right; }
.clip-index th[data-sort] { cursor: pointer; color: #1a5fb4; white-space: nowrap; }
.clip-index th[aria-sort=ascending]::after { content: " ▲"; }
.clip-index th[aria-sort=descending]::after { content: " ▼"; }
.clip-index td.caption { min-width: 220px; max-width: 360px; overflow-wrap: anywhere; }
.filters { margin: .6rem 0 1rem; display: flex; gap: 1rem; flex-wrap: wrap; }
.muted { color: #666; }
"""

_SCRIPT = """
(function () {
  var table = document.getElementById('clips');
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.querySelectorAll('th[data-sort]'));
  var state = {column: null, ascending: true};
  function value(row, column) {
    var v = row.cells[column].getAttribute('data-v');
    return v === null || v === '' ? null : Number(v);
  }
  heads.forEach(function (th) {
    th.addEventListener('click', function () {
      var column = Number(th.getAttribute('data-sort'));
      state.ascending = state.column === column ? !state.ascending : true;
      state.column = column;
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = value(a, column), y = value(b, column);
        if (x === null && y === null) { return 0; }
        if (x === null) { return 1; }
        if (y === null) { return -1; }
        return state.ascending ? x - y : y - x;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      heads.forEach(function (h) {
        h.setAttribute('aria-sort', h === th ? (state.ascending ? 'ascending' : 'descending') : 'none');
      });
    });
  });
  var filters = Array.prototype.slice.call(document.querySelectorAll('select[data-filter]'));
  function apply() {
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var keep = filters.every(function (f) { return f.value === '' || row.getAttribute(f.getAttribute('data-filter')) === f.value; });
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    document.getElementById('shown').textContent = String(shown);
  }
  filters.forEach(function (f) { f.addEventListener('change', apply); });
  apply();
})();
"""


def status(row: dict[str, Any]) -> str:
    """``kept``, or ``stage: reason`` for a reject."""
    return "kept" if row.get("kind") != "reject" else f"{row.get('stage')}: {row.get('reason')}"


def _select(attribute: str, title: str, values: list[str]) -> str:
    options = '<option value="">all</option>' + "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return f'<label>{escape(title)} <select data-filter="{attribute}">{options}</select></label>'


def render_clip_index(stats: dict) -> str:
    """The clip index page of ``stats`` (whose ``samples`` hold each dataset's ``index`` rows)."""
    samples = stats["samples"]
    drawn = list(zip(stats["datasets"], samples["datasets"]))
    scores = list(dict.fromkeys(name for _, s in drawn for name in s["score_columns"]))
    numeric = [*scores, "duration_sec", "height"]
    header = ["preview", "dataset", "status", "category", "caption"]
    heads = [f"<th>{h}</th>" for h in header]
    heads += [f'<th data-sort="{len(header) + k}">{escape(name)}</th>' for k, name in enumerate(numeric)]
    heads.append("<th>source and frames</th>")
    rows, categories, statuses = [], set(), set()
    for dataset, drawn_rows in ((d["label"], s["index"]) for d, s in drawn):
        for row in drawn_rows:
            category = row.get("category") or ""
            categories.add(category)
            statuses.add(status(row))
            cells = [
                f"<td>{preview(row)}</td>",
                f"<td>{escape(dataset)}</td>",
                f"<td>{escape(status(row))}{reject_text(row) if row.get('kind') == 'reject' and row.get('detail') else ''}</td>",
                f"<td>{escape(category)}</td>",
                f'<td class="caption">{caption_text(row)}</td>',
            ]
            for name in numeric:
                value = row.get(name)
                data = "" if value is None or value != value else repr(float(value))
                cells.append(f'<td class="num" data-v="{data}">{number(value)}</td>')
            source = escape(row.get("source_uri") or "")
            cells.append(f'<td class="meta"><code>{source}</code><br>{escape(frame_range(row))}</td>')
            attributes = f'data-dataset="{escape(dataset)}" data-category="{escape(category)}" data-status="{escape(status(row))}"'
            rows.append(f"<tr {attributes}>{''.join(cells)}</tr>")
    labels = [d["label"] for d, _ in drawn]
    filters = "".join([
        _select("data-dataset", "dataset", labels),
        _select("data-category", "category", sorted(categories)),
        _select("data-status", "status or reject reason", sorted(statuses, key=lambda s: (s != "kept", s))),
    ])  # fmt: skip
    names = escape(", ".join(labels))
    intro = (
        f'<p class="muted">Up to {samples["index_clips"]:,} clips drawn at random (seed {samples["seed"]}) from the kept '
        f'clips and the rejects; <span id="shown">{len(rows)}</span> of {len(rows)} shown. Click a score to sort. '
        '<a href="report.html">Back to the report</a>.</p>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>lavie stats clips: {names}</title><style>{CARD_CSS}{_CSS}</style></head><body>"
        f"<h1>Clip index: {names}</h1>{intro}<div class=\"filters\">{filters}</div>"
        f'<table id="clips" class="clip-index"><thead><tr>{"".join(heads)}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
