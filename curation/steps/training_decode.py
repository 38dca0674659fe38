"""Kept means trainable: every clip is opened and decoded the way the training stream does it.

The clip's video is opened with the training stream's reader (:func:`lavie.core.video.open_video`,
decord or, where decord cannot open the file, PyAV), which must find every frame of the clip, and
its first and last frames must decode. A clip that fails is rejected as ``undecodable_for_training``
here instead of being skipped, silently, by every training run that draws it. A task's rows are a
video's clips in order, so the reader of the last video stays open for its next clip.
"""

from __future__ import annotations

from curation.rows import Row
from curation.steps.base import Reject, StepContext
from lavie.core.errors import message_line
from lavie.core.video import VideoReader, VideoReadError, open_video

#: Frames are decoded this small here: whether a frame decodes does not depend on the output size.
_SIZE = (72, 128)
_open: tuple[str, VideoReader] | None = None


def _reader(uri: str, context: StepContext) -> VideoReader:
    global _open
    if _open is None or _open[0] != uri:
        if _open is not None:
            _open[1].close()
            _open = None
        _open = (uri, open_video(uri, context.storage_options(), size=_SIZE))
    return _open[1]


def check_trainable(row: Row, config: None, context: StepContext) -> None:
    start, end = row["start_frame"], row["end_frame"]
    try:
        reader = _reader(row["source_uri"], context)
        if end > len(reader):
            raise Reject("undecodable_for_training", f"the clip ends at frame {end}, the trainer's reader finds {len(reader)}")
        reader.read([start, end - 1])
    except VideoReadError as exc:
        raise Reject("undecodable_for_training", message_line(exc)) from None
