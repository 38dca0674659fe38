"""Scene detection with PySceneDetect, one row per single-scene clip (paper, section 5.1).

Frames are decoded by PyAV straight to the analysis width through libswscale, instead of decoding
full-size BGR frames and shrinking them with OpenCV as PySceneDetect's own pipeline does. The
analysis width defaults to 256, the width PySceneDetect's auto-downscale targets, so the cut list
matches its command line's while decoding costs a fraction.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from scenedetect import AdaptiveDetector, ContentDetector
from scenedetect.scene_manager import get_scenes_from_cuts
from scenedetect.backends.pyav import VideoStreamAv

from curation.config import SceneDetectionConfig
from curation.metadata import VideoMetadata
from curation.rows import METADATA, VIDEO_ROWS, Row, add_seconds, count_words, new_row, reject
from curation.schema import clip_id_for
from curation.errors import first_line
from curation.video_io import open_source

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


def split_into_clips(row: Row, config: SceneDetectionConfig, storage_options: dict | None = None) -> list[Row]:
    """Detect the scenes of a probed video row and emit one row per clip (or the video's reject)."""
    if row.get("reject_stage"):
        row[VIDEO_ROWS] = 1
        return [row]
    started = time.perf_counter()
    uri = row["source_uri"]
    try:
        with open_source(uri, storage_options) as source:
            scenes, decoded, failures = detect_scenes(source, config, name=uri)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a run over millions
        reject(row, "scene_detect", "decode_error", first_line(exc))
        row[VIDEO_ROWS] = 1
        return [add_seconds(row, "scene_detect", time.perf_counter() - started)]
    declared = row["num_frames"] or decoded
    if decoded < TRUNCATION_TOLERANCE * declared:
        reject(row, "scene_detect", "truncated", f"decoded {decoded} of {declared} declared frames")
        row[VIDEO_ROWS] = 1
        return [add_seconds(row, "scene_detect", time.perf_counter() - started)]
    if not scenes:
        reject(row, "scene_detect", "no_frames", f"no scene in {decoded} decoded frames ({failures} failed)")
        row[VIDEO_ROWS] = 1
        return [add_seconds(row, "scene_detect", time.perf_counter() - started)]
    elapsed = time.perf_counter() - started
    metadata = VideoMetadata.from_record(json.loads(row[METADATA]))
    clips = []
    for start, end in scenes:
        fps = row["fps"]
        start_sec, end_sec = start / fps, end / fps
        caption = metadata.caption_for(start_sec, end_sec)
        clip = new_row(**{k: v for k, v in row.items() if k.startswith("_") and k != METADATA})
        clip.update(
            clip_id=clip_id_for(uri, start),
            source_uri=uri,
            source_dataset=row["source_dataset"],
            category=row["category"],
            caption=caption,
            caption_words=count_words(caption),
            start_frame=start,
            end_frame=end,
            num_frames=end - start,
            start_sec=start_sec,
            end_sec=end_sec,
            duration_sec=end_sec - start_sec,
            fps=fps,
            width=row["width"],
            height=row["height"],
            codec=row["codec"],
        )
        clip[VIDEO_ROWS] = len(scenes)
        clips.append(add_seconds(clip, "scene_detect", elapsed / len(scenes)))
    return clips
