"""Kept means trainable: every clip is opened and decoded the way the training stream does it.

The clip's video is opened with the training stream's reader (:func:`lavie.core.video.open_video`,
decord or, where decord cannot open the file, PyAV), which must find every frame of the clip, and
its first and last frames must decode. A clip that fails is rejected as ``undecodable_for_training``
here instead of being skipped, silently, by every training run that draws it. The reader is the
video's (:meth:`~curation.steps.base.StepContext.source`): one open for all of its clips.
"""

from __future__ import annotations

from curation.rows import Row
from curation.steps.base import Reject, StepContext
from lavie.core.errors import message_line
from lavie.core.video import VideoReadError

#: Frames are decoded this small here: whether a frame decodes does not depend on the output size.
_SIZE = (72, 128)


def check_trainable(row: Row, config: None, context: StepContext) -> None:
    start, end = row["start_frame"], row["end_frame"]
    try:
        reader = context.source(row["source_uri"]).reader(_SIZE)
        if end > len(reader):
            raise Reject("undecodable_for_training", f"the clip ends at frame {end}, the trainer's reader finds {len(reader)}")
        reader.read([start, end - 1])
    except VideoReadError as exc:
        raise Reject("undecodable_for_training", message_line(exc)) from None
