"""``lavie stats MANIFEST [MANIFEST ...] --out REPORT_DIR [--label NAME ...]``."""

from __future__ import annotations

import argparse
import json
import posixpath

from curation.cli import parse_storage_options
from curation.errors import UserError, first_line
from curation.inputs import filesystem_for
from curation.stats.compute import build_stats
from curation.stats.html_report import render_report
from curation.stats.manifest import open_manifest

REPORT_FILE = "report.html"
STATS_FILE = "stats.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="report the statistics of curated manifests (paper section 5.1, Figs. 6-7)",
        description="Write REPORT_DIR/report.html (self-contained page with the plots) and "
        "REPORT_DIR/stats.json (every number on the page) for one or more manifests, side by side: "
        "categories, clip durations, caption lengths, aesthetic scores, resolutions, the curation "
        "funnel and totals. A MANIFEST is a curation output folder or any Parquet dataset with the "
        "clip columns, as a local path or fsspec URL (s3:// settings from --storage-option or the environment).",
    )
    parser.add_argument("manifests", nargs="+", metavar="MANIFEST", help="curation output or Parquet dataset")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder (or URL) to write the report to")
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec storage option for remote manifests and REPORT_DIR, e.g. endpoint_url=http://127.0.0.1:9000",
    )
    parser.add_argument(
        "--label",
        action="append",
        metavar="NAME",
        help="name of each MANIFEST in the report, once per MANIFEST in the same order (default: its folder name)",
    )
    parser.set_defaults(handler=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    labels = args.label or [None] * len(args.manifests)
    if len(labels) != len(args.manifests):
        given, wanted = len(labels), len(args.manifests)
        raise UserError(f"--label given {given} times for {wanted} manifests: give one per manifest or none")
    storage_options = parse_storage_options(args.storage_option) or None
    manifests = [open_manifest(uri, label, storage_options) for uri, label in zip(args.manifests, labels)]
    seen: dict[str, str] = {}
    for m in manifests:
        if m.label in seen:
            raise UserError(f"{m.uri}: label '{m.label}' is also the label of {seen[m.label]}; name each with --label")
        seen[m.label] = m.uri
    stats = build_stats(manifests)
    report_uri, stats_uri = write_outputs(stats, args.out, storage_options)
    print(summary(stats, report_uri, stats_uri))
    return 0


def write_outputs(stats: dict, out: str, storage_options: dict | None = None) -> tuple[str, str]:
    """Write stats.json and report.html under ``out``; returns where they went."""
    fs, path = filesystem_for(out, storage_options)
    try:
        fs.makedirs(path, exist_ok=True)
        with fs.open(posixpath.join(path, STATS_FILE), "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2, ensure_ascii=False)
            f.write("\n")
        with fs.open(posixpath.join(path, REPORT_FILE), "w", encoding="utf-8") as f:
            f.write(render_report(stats))
    except OSError as exc:
        raise UserError(f"{out}: cannot write the report ({first_line(exc)})") from None
    base = out.rstrip("/")
    return f"{base}/{REPORT_FILE}", f"{base}/{STATS_FILE}"


def summary(stats: dict, report_uri: str, stats_uri: str) -> str:
    """A few lines for the terminal: the headline numbers of each dataset, and any warnings."""
    lines = [f"lavie stats: wrote {report_uri} and {stats_uri}"]
    for d in stats["datasets"]:
        lines.append(f"  {d['label']}: {_headline(d)}")
        if d["finished"] is False:
            lines.append(f"  warning ({d['label']}): no _SUCCESS marker, the run did not finish")
        for warning in d["funnel"].get("warnings", []):
            lines.append(f"  warning ({d['label']}): {warning}")
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
    return (
        f"{_count(totals['videos'], 'video')}, {_count(totals['clips'], 'clip')}, {totals['hours']:,} h; "
        f"{aesthetic_text}; {resolution_text}; {category_text}"
    )


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
