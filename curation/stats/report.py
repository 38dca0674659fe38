"""The report's files and its terminal summary: ``report.html`` and ``stats.json`` under the
report folder (local or fsspec), with samples also ``clips.html`` and the previews in
``report_files/``, and a few lines with the headline numbers of each dataset."""

from __future__ import annotations

import json
from collections.abc import Callable

from curation.stats.clip_index import INDEX_FILE, render_clip_index
from curation.stats.compute import build_stats
from curation.stats.html_report import render_report
from curation.stats.inputs import open_for_report
from curation.stats.previews import FILES_DIR, make_previews, request_for
from curation.stats.samples import SampleOptions, drawn_rows
from lavie.core.errors import UserError, first_line
from lavie.core.storage import atomic_write, join

REPORT_FILE = "report.html"
STATS_FILE = "stats.json"


def create_report(
    uris: list[str], labels: list[str] | None, out: str, storage_options: dict | None = None,
    samples: SampleOptions | None = None, connect: Callable[[], None] | None = None,
) -> tuple[dict, str, str]:  # fmt: skip
    """Open every manifest (labelled by ``labels``, one per manifest, or by folder name), compute
    the figures, draw the examples (``samples``; none by default) and make their previews on Ray
    (``connect`` is called first, only when there are previews to make), and write the report;
    returns (stats, report URI, stats URI)."""
    samples = samples or SampleOptions(per_group=0)
    labels = labels or [None] * len(uris)
    if len(labels) != len(uris):
        raise UserError(f"--label given {len(labels)} times for {len(uris)} manifests: give one per manifest or none")
    manifests = [open_for_report(uri, label, storage_options) for uri, label in zip(uris, labels)]
    seen: dict[str, str] = {}
    for m in manifests:
        if m.label in seen:
            raise UserError(f"{m.manifest.uri}: label '{m.label}' is also the label of {seen[m.label]}; name each with --label")
        seen[m.label] = m.manifest.uri
    stats = build_stats(manifests, samples)
    if samples.enabled:
        add_previews(stats, out, storage_options, connect)
    return (stats, *write_outputs(stats, out, storage_options))


def add_previews(stats: dict, out: str, storage_options: dict | None, connect: Callable[[], None] | None) -> None:
    """Make the preview of every drawn row and record it in the row: ``preview`` (its path
    relative to the report) or, when it could not be made, ``preview_error``."""
    rows = [row for drawn in stats["samples"]["datasets"] for row in drawn_rows(drawn)]
    try:
        made = make_previews((request_for(row) for row in rows), out, storage_options, connect)
    except OSError as exc:
        raise UserError(f"{out}: cannot write the previews ({first_line(exc)})") from None
    for row in rows:
        name = request_for(row).name
        error = made.get(name, "no preview made")
        row["preview"] = None if error else f"{FILES_DIR}/{name}"
        row["preview_error"] = error


def write_outputs(stats: dict, out: str, storage_options: dict | None = None) -> tuple[str, str]:
    """Write stats.json and report.html (and clips.html when the report has a clip index) under
    ``out``; returns where the first two went."""
    report_uri, stats_uri = join(out, REPORT_FILE), join(out, STATS_FILE)
    try:
        atomic_write(stats_uri, (json.dumps(stats, indent=2, ensure_ascii=False) + "\n").encode(), storage_options)
        if stats["samples"].get("index_clips"):
            atomic_write(join(out, INDEX_FILE), render_clip_index(stats).encode(), storage_options)
        atomic_write(report_uri, render_report(stats).encode(), storage_options)
    except OSError as exc:
        raise UserError(f"{out}: cannot write the report ({first_line(exc)})") from None
    return report_uri, stats_uri


def summary(stats: dict, report_uri: str, stats_uri: str) -> str:
    """A few lines for the terminal: the headline numbers of each dataset, and any warnings."""
    lines = [f"lavie stats: wrote {report_uri} and {stats_uri}"]
    for d in stats["datasets"]:
        lines.append(f"  {d['label']}: {_headline(d)}")
        if d["finished"] is False:
            lines.append(f"  warning ({d['label']}): no _SUCCESS marker, the run did not finish")
        for warning in d["funnel"].get("warnings", []):
            lines.append(f"  warning ({d['label']}): {warning}")
    samples = stats.get("samples") or {}
    if samples.get("per_group"):
        rows = {id(row): row for drawn in samples["datasets"] for row in drawn_rows(drawn)}.values()
        missing = sum(1 for row in rows if not row.get("preview"))
        index = f"; clip index {INDEX_FILE}" if samples.get("index_clips") else ""
        lines.append(
            f"  examples: {len(rows):,} clips drawn (seed {samples['seed']}), "
            f"{len(rows) - missing:,} previews, {missing:,} placeholders{index}"
        )
    return "\n".join(lines)


def _headline(d: dict) -> str:
    totals = d["totals"]
    if totals["clips"] == 0:
        return "no clips"
    aesthetic = d["aesthetic_score"]
    if aesthetic["available"]:
        pct = dict(zip(aesthetic["labels"], aesthetic["percent"]))
        aesthetic_text = "aesthetic " + " / ".join(f"{label} {pct[label]:.2f}%" for label in aesthetic["labels"])
    else:
        aesthetic_text = f"aesthetic: {aesthetic['note']}"
    resolution = d["resolution"]
    if resolution["available"]:
        top = max(range(len(resolution["counts"])), key=lambda k: resolution["counts"][k])
        resolution_text = f"mostly {resolution['labels'][top]} ({resolution['percent'][top]:.2f}%)"
    else:
        resolution_text = resolution["note"]
    categories = d["category"]
    if categories["available"]:
        category_text = _count(len(categories["labels"]), "category", "categories")
    else:
        category_text = categories["note"]
    motion = d.get("motion_score") or {}
    motion_text = f"; {motion['percent'][0]:.2f}% static" if motion.get("available") else ""
    return (
        f"{_count(totals['videos'], 'video')}, {_count(totals['clips'], 'clip')}, {totals['hours']:,} h; "
        f"{aesthetic_text}; {resolution_text}; {category_text}{motion_text}"
    )


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
