"""Scene detection with PySceneDetect, one row per single-scene clip (paper, section 5.1).

Frames are decoded by PyAV straight to the analysis width through libswscale, instead of decoding
full-size BGR frames and shrinking them with OpenCV as PySceneDetect's own pipeline does. The
analysis width defaults to 256, the width PySceneDetect's auto-downscale targets, so the cut list
matches its command line's while decoding costs a fraction.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.backends.pyav import VideoStreamAv
from scenedetect.scene_manager import get_scenes_from_cuts

from curation.config import SceneDetectionConfig
from curation.metadata import VideoMetadata
from curation.rows import METADATA, Row, count_words
from curation.steps.base import Reject, StepContext
from lavie.core.errors import first_line
from lavie.core.manifest import clip_id_for
from lavie.core.storage import open_input

# A file that decodes to fewer frames than its container declares is truncated.
TRUNCATION_TOLERANCE = 0.9


class ScaledVideoStreamAv(VideoStreamAv):
    """PySceneDetect's PyAV stream, returning frames already scaled to the analysis size.

    libswscale shrinks the decoded YUV planes (no colour conversion at full size), then OpenCV
    converts the small frame to the BGR that PySceneDetect's detectors take.
    """

    def __init__(self, path_or_io, config: SceneDetectionConfig, name: str = "") -> None:
        super().__init__(path_or_io, name=name, threading_mode=config.decoder_threads.upper(), suppress_output=True)
        if config.skip_deblocking:
            self._video_stream.codec_context.options = {"skip_loop_filter": "all"}
        self._interpolation = getattr(Interpolation, config.interpolation.upper())
        width, height = super().frame_size
        scale = min(1.0, config.analysis_width / width)
        # PySceneDetect's downscale rounding, made even as 4:2:0 chroma needs.
        self._analysis_size = (_even(width * scale), _even(height * scale))
        # One reformatter for the whole video: PyAV caches its swscale context, whereas
        # `frame.to_ndarray(width=..)` builds a new one for every frame (half the throughput).
        self._reformatter = VideoReformatter()

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._analysis_size

    def read(self, decode: bool = True) -> np.ndarray | bool:
        if not super().read(decode=False):
            return False
        if not decode:
            return True
        width, height = self._analysis_size
        small = self._reformatter.reformat(
            self._frame, width=width, height=height, format="yuv420p", interpolation=self._interpolation
        )
        return cv2.cvtColor(small.to_ndarray(), cv2.COLOR_YUV2BGR_I420)


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _detector(config: SceneDetectionConfig):
    if config.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=config.adaptive_threshold, min_scene_len=config.min_scene_len)
    return ContentDetector(threshold=config.threshold, min_scene_len=config.min_scene_len)


def detect_scenes(source, config: SceneDetectionConfig, name: str = "") -> tuple[list[tuple[int, int]], int, int]:
    """Scenes of one video as (start_frame, end_frame exclusive), frames decoded, decode failures.

    The detectors and the cut-to-scene logic are PySceneDetect's; the frame loop runs in the
    calling thread rather than in SceneManager's decode thread, since the pipeline already runs
    one such task per core and a second thread per task only adds contention.
    """
    stream = ScaledVideoStreamAv(source, config, name=name)
    detector = _detector(config)
    cuts, first = [], None
    while (frame := stream.read()) is not False:
        position = stream.position
        first = position if first is None else first
        cuts += detector.process_frame(position, frame)
    if first is None:
        return [], 0, stream._decode_failures
    last = stream.position
    cuts += detector.post_process(last)
    scenes = get_scenes_from_cuts(sorted(set(cuts)), start_pos=first, end_pos=last + 1)
    return [(start.frame_num, end.frame_num) for start, end in scenes], stream.frame_number, stream._decode_failures


def split_into_clips(row: Row, config: SceneDetectionConfig, context: StepContext) -> list[dict[str, Any]]:
    """The clips of a probed video row: the columns of each that differ from the video's."""
    uri = row["source_uri"]
    try:
        with open_input(uri, context.storage_options()) as source:
            scenes, decoded, failures = detect_scenes(source, config, name=uri)
    except Exception as exc:  # noqa: BLE001 - PyAV and PySceneDetect raise many types for a bad file
        raise Reject("decode_error", first_line(exc)) from None
    declared = row["num_frames"] or decoded
    if decoded < TRUNCATION_TOLERANCE * declared:
        raise Reject("truncated", f"decoded {decoded} of {declared} declared frames")
    if not scenes:
        raise Reject("no_frames", f"no scene in {decoded} decoded frames ({failures} failed)")
    metadata = VideoMetadata.from_record(json.loads(row[METADATA]))
    fps = row["fps"]
    clips = []
    for start, end in scenes:
        start_sec, end_sec = start / fps, end / fps
        caption = metadata.caption_for(start_sec, end_sec)
        clips.append({
            "clip_id": clip_id_for(uri, start),
            "caption": caption,
            "caption_words": count_words(caption),
            "start_frame": start,
            "end_frame": end,
            "num_frames": end - start,
            "start_sec": start_sec,
            "end_sec": end_sec,
            "duration_sec": end_sec - start_sec,
        })  # fmt: skip
    return clips
