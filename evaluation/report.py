"""A measurement's files: ``result.json`` (every number, choice and version) and ``report.html``
(the metric beside the paper's Table 1 or 2 rows, the protocol, and a grid of sample frames as
the metric saw them, inline PNG: one self-contained page that needs no network)."""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from evaluation.preprocess import crop_resize
from evaluation.sets import VideoItem
from lavie.core.errors import UserError, first_line
from lavie.core.storage import atomic_write, join
from lavie.core.video import VideoReadError, open_video

RESULT_FILE = "result.json"
REPORT_FILE = "report.html"
THUMBNAIL_HEIGHT = 96

# The LaVie paper (arXiv 2309.15103), Tables 1 and 2: zero-shot text-to-video.
FVD_PAPER = {
    "benchmark": "UCF-101, zero-shot (Table 1)",
    "better": "lower",
    "rows": [
        {"method": "CogVideo (Chinese)", "value": 751.34},
        {"method": "CogVideo (English)", "value": 701.59},
        {"method": "Make-A-Video", "value": 367.23},
        {"method": "VideoFusion", "value": 639.90},
        {"method": "MagicVideo", "value": 699.00},
        {"method": "LVDM", "value": 641.80},
        {"method": "Video LDM", "value": 550.61},
        {"method": "LaVie", "value": 526.30},
    ],
}
CLIPSIM_PAPER = {
    "benchmark": "MSR-VTT, zero-shot (Table 2)",
    "better": "higher",
    "rows": [
        {"method": "GODIVA", "value": 0.2402},
        {"method": "NÜWA", "value": 0.2439},
        {"method": "CogVideo (Chinese)", "value": 0.2614},
        {"method": "CogVideo (English)", "value": 0.2631},
        {"method": "Make-A-Video", "value": 0.3049},
        {"method": "Video LDM", "value": 0.2929},
        {"method": "ModelScope", "value": 0.2930},
        {"method": "LaVie", "value": 0.2949},
    ],
}
_TITLES = {"fvd": "FVD", "clipsim": "CLIPSIM"}
#: FVD's networks as the report names them; the paper's numbers are I3D FVDs.
_FVD_NETWORKS = {"i3d": "FVD (I3D)", "videomae": "content-debiased FVD (VideoMAE-v2)"}


@dataclass(frozen=True)
class Sample:
    """A row of the frame grid: which set, which video, its PNG frames, and a note (a caption)."""

    group: str
    label: str
    frames: list[bytes]
    note: str = ""


def versions() -> dict[str, str]:
    """Versions of what the number depends on."""
    found = {"python": platform.python_version()}
    for package in ("lavie-platform", "torch", "numpy", "open_clip_torch", "ray", "av", "decord", "pillow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def png(frame: np.ndarray) -> bytes:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(frame))
    width = max(1, round(image.width * THUMBNAIL_HEIGHT / image.height))
    sink = io.BytesIO()
    image.resize((width, THUMBNAIL_HEIGHT), Image.BILINEAR).save(sink, format="PNG")
    return sink.getvalue()


def sample_frames(
    item: VideoItem, span: int | None, storage_options: Mapping[str, Any] | None = None, *,
    crop: float | None = None, size: int = 224,
) -> list[bytes]:  # fmt: skip
    """First, middle and last of the item's first ``span`` frames (all of them: None) as PNG
    thumbnails, cropped and resized as the metric sees them when ``crop`` is given; an empty list
    when the video cannot be read (the grid is an illustration, the numbers are already done)."""
    try:
        with open_video(item.uri, storage_options) as reader:
            end = min(len(reader), item.end_frame or len(reader))
            last = end - 1 if span is None else min(end, item.start_frame + span) - 1
            frames = reader.read(sorted({item.start_frame, (item.start_frame + last) // 2, last}))
    except VideoReadError:
        return []
    if crop is not None:
        frames = crop_resize(frames, crop, size).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return [png(frame) for frame in frames]


def write_outputs(record: dict[str, Any], samples: Sequence[Sample], out: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """``result.json`` and ``report.html`` under ``out``, each written atomically."""
    try:
        atomic_write(join(out, RESULT_FILE), (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode(), storage_options)
        atomic_write(join(out, REPORT_FILE), render(record, samples).encode(), storage_options)
    except OSError as exc:
        raise UserError(f"{out}: cannot write the result ({first_line(exc)})") from None


def format_value(metric: str, value: float) -> str:
    return f"{value:.2f}" if metric == "fvd" else f"{value:.4f}"


def render(record: Mapping[str, Any], samples: Sequence[Sample]) -> str:
    metric, value, paper = record["metric"], record["value"], record["paper"]
    title = _TITLES[metric]
    # Only an I3D FVD sits beside the paper's FVDs; a VideoMAE-v2 FVD is on another scale.
    comparable = metric != "fvd" or record.get("features", "i3d") == "i3d"
    rows = [(r["method"], r["value"], False) for r in paper["rows"]] + ([("this run", value, True)] if comparable else [])
    rows.sort(key=lambda r: r[1], reverse=paper["better"] == "higher")
    table = "".join(
        f'<tr class="{"ours" if ours else "paper"}"><td>{html.escape(name)}</td>'
        f'<td class="num">{format_value(metric, v)}</td></tr>'
        for name, v, ours in rows
    )
    sets = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(_describe_set(entry))}</td></tr>"
        for name, entry in record["sets"].items()
    )
    protocol = _rows(record["protocol"])
    networks = [(key, name, record[key]) for key, name in _FVD_NETWORKS.items() if key in record]
    networks = networks or [("clip", "CLIP", record.get("clip") or {})]
    models = "".join(
        f'<h3>{html.escape(name)}</h3><table class="model" id="model-{key}">{_rows(entry)}</table>'
        for key, name, entry in networks if entry
    )  # fmt: skip
    headline = _headline(record)
    note = "" if comparable else "<p><b>This run measured VideoMAE-v2 features only: its FVD is not comparable to the I3D FVDs of the paper.</b></p>"
    benchmark = record.get("benchmark")
    generated = f'<h2>Benchmark run</h2><table id="benchmark">{_rows(benchmark)}</table>' if benchmark else ""
    grid = "".join(_sample_row(sample) for sample in samples) or "<p>no sample frames could be read</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lavie eval {metric}: {format_value(metric, value)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }} h3 {{ font-size: 14px; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.ours td {{ font-weight: bold; background: #fff3c4; }}
.metric {{ font-size: 32px; font-weight: bold; }}
.sample {{ display: flex; gap: 6px; align-items: center; margin: 6px 0; }}
.sample .label {{ width: 320px; font-size: 12px; word-break: break-all; }}
.sample img {{ height: {THUMBNAIL_HEIGHT}px; }}
</style></head><body>
<h1>{title} ({html.escape(paper["benchmark"].split(",")[0])} protocol)</h1>
<p><span class="metric" id="metric-value">{format_value(metric, value)}</span> ({paper["better"]} is better)</p>
{headline}
<h2>Beside the paper: {html.escape(paper["benchmark"])}</h2>
<p>The paper's numbers hold for its full protocol (the data set and sample counts below);
a run on other sets or fewer videos is not comparable to them.</p>
{note}<table id="paper">{table}</table>
<h2>Sets</h2><table id="sets">{sets}</table>
<h2>Protocol</h2><table id="protocol">{protocol}</table>
<h2>Model</h2>{models}
{generated}
<h2>Sample frames (first, middle, last; FVD: cropped and resized as I3D sees them)</h2>
<div id="samples">{grid}</div>
<p>Measured in {record["seconds"]} s; versions: {html.escape(", ".join(f"{k} {v}" for k, v in record["versions"].items()))}.</p>
</body></html>
"""


def _rows(mapping: Mapping[str, Any]) -> str:
    """Key-value table rows; nested values (settings) as compact JSON."""
    return "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
        for k, v in mapping.items()
    )


def _headline(record: Mapping[str, Any]) -> str:
    """Each FVD of the run, named by its network (one line per network), when there are several."""
    values = record.get("fvd") or {}
    if len(values) < 2:
        return ""
    items = "".join(
        f'<li id="fvd-{html.escape(name)}">{html.escape(_FVD_NETWORKS.get(name, name))}: '
        f'<b>{format_value("fvd", value)}</b></li>'
        for name, value in values.items()
    )
    return f'<ul id="fvd-values">{items}</ul>'


def _describe_set(entry: Mapping[str, Any]) -> str:
    text = f"{entry['uri']} ({entry['layout']}): {entry['used']} video(s)"
    networks = entry.get("networks") or {None: entry}
    return text + "".join(f"; {_describe_counts(counts, name if len(networks) > 1 else None)}" for name, counts in networks.items())


def _describe_counts(counts: Mapping[str, Any], network: str | None) -> str:
    prefix = f"{network}: " if network else ""
    if counts.get("statistics") == "cache":
        return prefix + "statistics from the cache"
    return prefix + f"{counts['computed']} computed now, {counts['reused']} from earlier runs"


def _sample_row(sample: Sample) -> str:
    images = "".join(
        f'<img alt="frame" src="data:image/png;base64,{base64.b64encode(frame).decode()}">' for frame in sample.frames
    )
    note = f"<br>{html.escape(sample.note)}" if sample.note else ""
    return (
        f'<div class="sample"><div class="label"><b>{html.escape(sample.group)}</b> '
        f"{html.escape(sample.label)}{note}</div>{images}</div>"
    )
