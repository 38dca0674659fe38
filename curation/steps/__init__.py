"""The curation steps, in pipeline order (paper, section 5.1): the one list the executor runs, the
shard writer counts and the statistics funnel draws.

Adding a step: write its module (see :mod:`curation.steps.base` for the signatures) and add one
entry here. Its name becomes a reject stage; its position says whether it drops whole inputs
(before the split step) or clips (after it).
"""

from __future__ import annotations

from curation.steps.base import Reject, Step, StepContext

#: Inputs that name no file are rejected by the planner, before any step runs, under this stage.
INPUT_STAGE = "input"
INPUT_TITLE = "file found"

STEPS: tuple[Step, ...] = (
    Step("probe", "probe", "map", "curation.steps.probe:probe_video"),
    Step("scene_detect", "scene detection", "split", "curation.steps.scenes:split_into_clips", section="scenes"),
    Step("min_frames", "clip length", "map", "curation.steps.filters:filter_min_frames", section="filters"),
    Step("motion", "motion", "map", "curation.steps.motion:score_motion", section="motion"),
    Step("captioner", "captioner", "model", "curation.steps.captioner:CaptionClips", section="captioner",
         needs=("frames",)),
    Step("caption", "caption", "map", "curation.steps.filters:filter_caption", section="filters"),
    Step("resolution", "resolution", "map", "curation.steps.filters:filter_min_height", section="filters"),
    Step("training_decode", "decodes for training", "map", "curation.steps.training_decode:check_trainable"),
    Step("overlay", "overlaid text", "model", "curation.steps.overlay:ScoreOverlay", section="overlay",
         needs=("frames",), check="curation.steps.overlay:check_overlay", filter="curation.steps.overlay:filter_overlay"),
    Step("scoring", "scoring", "model", "curation.steps.scoring:ScoreClips", section="scoring", needs=("frames",)),
)  # fmt: skip

_SPLIT = next(i for i, step in enumerate(STEPS) if step.kind == "split")

#: `lavie dedup` drops clips of a finished manifest under this stage, after every step.
DEDUP_STAGE = "dedup"
DEDUP_TITLE = "near-duplicates"

#: Every reject stage of a curation run in pipeline order, and the funnel's title of each (and of
#: the dedup stage).
STAGES: tuple[str, ...] = (INPUT_STAGE, *(step.name for step in STEPS))
TITLES: dict[str, str] = {INPUT_STAGE: INPUT_TITLE, **{step.name: step.title for step in STEPS}, DEDUP_STAGE: DEDUP_TITLE}
#: Stages that drop whole inputs (up to the split step) and those that drop clips.
INPUT_STAGES: tuple[str, ...] = STAGES[: _SPLIT + 2]
CLIP_STAGES: tuple[str, ...] = STAGES[_SPLIT + 2 :]

__all__ = ["CLIP_STAGES", "DEDUP_STAGE", "INPUT_STAGE", "INPUT_STAGES", "STAGES", "STEPS", "TITLES", "Reject", "Step", "StepContext"]
