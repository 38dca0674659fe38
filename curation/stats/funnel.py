"""The curation funnel: how many inputs and clips each stage dropped, and why.

Drops are counted from ``rejects/`` (a row with a null ``clip_id`` is a whole input that was
dropped, any other row one clip); the totals they are taken from (inputs, clips detected) come from
``run.json``'s ``counts``. The stages, their order and their titles are the declared curation steps
(:mod:`curation.steps`): those the run lists in ``run.json``'s ``steps``, else all of them. Where the two disagree with each other or with ``clips/`` the report says
so in ``warnings`` rather than hiding it.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from curation.steps import INPUT_STAGE, INPUT_STAGES, STAGES, TITLES

REJECT_COLUMNS_USED = ("stage", "reason", "clip_id")


class RejectCounts:
    """Reject rows counted by (stage, reason, whole input or clip); mergeable like ClipStats."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, bool]] = Counter()

    def add_batch(self, batch: pa.RecordBatch) -> None:
        table = pa.table(
            {
                "stage": batch.column("stage"),
                "reason": batch.column("reason"),
                "input_level": pc.is_null(batch.column("clip_id")),
            }
        )
        for row in table.group_by(["stage", "reason", "input_level"]).aggregate([([], "count_all")]).to_pylist():
            self.counts[(row["stage"], row["reason"], row["input_level"])] += row["count_all"]

    def merge(self, other: RejectCounts) -> None:
        self.counts.update(other.counts)

    def by_stage(self, stages: tuple[str, ...] = STAGES) -> list[dict]:
        """One entry per stage in pipeline order (``stages``, then any others found in the rows)."""
        seen = {stage for stage, _, _ in self.counts}
        stages = list(stages) + sorted(seen - set(stages))
        rows = []
        for stage in stages:
            reasons: Counter[str] = Counter()
            inputs = clips = 0
            for (s, reason, input_level), n in self.counts.items():
                if s != stage:
                    continue
                reasons[reason] += n
                if input_level:
                    inputs += n
                else:
                    clips += n
            ordered = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
            rows.append({
                "stage": stage, "title": TITLES.get(stage, stage), "inputs_dropped": inputs, "clips_dropped": clips,
                "reasons": ordered,
            })  # fmt: skip
        return rows


def run_stages(run: dict | None) -> tuple[str, ...]:
    """The stages of the run that wrote the manifest: the steps its run.json lists, else every
    declared one (a run.json of another version or tool)."""
    steps = run.get("steps") if isinstance(run, dict) else None
    if isinstance(steps, list) and all(isinstance(step, str) for step in steps):
        return (INPUT_STAGE, *steps)
    return STAGES


def funnel_figures(run: dict | None, rejects: RejectCounts | None, clips_kept: int) -> dict:
    """The funnel panel of one dataset; ``clips_kept`` is the number of rows in ``clips/``."""
    if run is None and rejects is None:
        return {"available": False, "note": "not available", "why": "no run.json and no rejects/"}
    counts = run.get("counts") if run is not None else None
    counts = counts if isinstance(counts, dict) else None
    stages = rejects.by_stage(run_stages(run)) if rejects is not None else None
    warnings: list[str] = []

    clips_detected = None
    if counts is not None and isinstance(counts.get("clips_detected"), int):
        clips_detected = counts["clips_detected"]
    elif stages is not None:
        clips_detected = clips_kept + sum(s["clips_dropped"] for s in stages)

    inputs_remaining = clips_remaining = None
    if stages is not None:
        dropped = {s["stage"]: s for s in stages}
        input_stages = [s["stage"] for s in stages if s["stage"] in INPUT_STAGES]
        clip_stages = [s["stage"] for s in stages if s["stage"] not in INPUT_STAGES]
        if counts is not None and isinstance(counts.get("inputs"), int):
            inputs_remaining = _remaining("all inputs", counts["inputs"], input_stages, dropped, "inputs_dropped")
        if clips_detected is not None:
            clips_remaining = _remaining("all clips", clips_detected, clip_stages, dropped, "clips_dropped")
        if counts is not None:
            warnings += _disagreements(counts, stages, clips_kept)
    if clips_remaining is not None and clips_remaining[-1]["count"] != clips_kept:
        left = clips_remaining[-1]["count"]
        warnings.append(f"clips detected minus clips rejected is {left}, but clips/ holds {clips_kept} clips")
    return {
        "available": True,
        "run_counts": counts,
        "stages": stages,
        "inputs_remaining": inputs_remaining,
        "clips_remaining": clips_remaining,
        "warnings": warnings,
    }


def _remaining(first: str, start: int, stages: list[str], dropped: dict, key: str) -> list[dict]:
    """What is left after each stage (labelled by the step's title), as a count and as a
    percentage of ``start``."""
    counts = [start]
    for stage in stages:
        counts.append(counts[-1] - dropped[stage][key])
    return [
        {"step": step, "count": n, "percent": round(100 * n / start, 2) if start else 0.0}
        for step, n in zip((first, *(dropped[stage]["title"] for stage in stages)), counts)
    ]


def _disagreements(counts: dict, stages: list[dict], clips_kept: int) -> list[str]:
    found = {
        "clips_kept": clips_kept,
        "inputs_rejected": sum(s["inputs_dropped"] for s in stages),
        "clips_rejected": sum(s["clips_dropped"] for s in stages),
    }
    where = {"clips_kept": "clips/ holds", "inputs_rejected": "rejects/ holds", "clips_rejected": "rejects/ holds"}
    return [
        f"run.json counts {key}={counts[key]}, but {where[key]} {value}"
        for key, value in found.items()
        if isinstance(counts.get(key), int) and counts[key] != value
    ]
