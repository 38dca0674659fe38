"""Scene detection with PySceneDetect, one row per single-scene clip (paper, section 5.1).

Frames are decoded by PyAV straight to the analysis width through libswscale, instead of decoding
full-size BGR frames and shrinking them with OpenCV as PySceneDetect's own pipeline does. The
analysis width defaults to 256, the width PySceneDetect's auto-downscale targets, so the cut list
matches its command line's while decoding costs a fraction.

Frames are numbered in decode order (the n-th frame decoded is frame n), for constant and
variable frame rates alike: the numbers the training stream's reader uses. PySceneDetect's own
numbering, the frame's time multiplied by the average rate, drifts off it on a variable frame
rate (a 60-frame file can end at "frame 70"). Clip times come from the frames' real timestamps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode
from scenedetect.backends.pyav import VideoStreamAv
from scenedetect.scene_manager import get_scenes_from_cuts

from curation.config import SceneDetectionConfig
from curation.metadata import VideoMetadata
from curation.rows import METADATA, MOTION, Row, count_words
from curation.steps.base import Reject, StepContext
from curation.steps.motion import MotionVectorMeter, request_motion_vectors, sample_stride
from lavie.core.errors import first_line
from lavie.core.manifest import clip_id_for

# A file that decodes to fewer frames than its container declares is truncated.
TRUNCATION_TOLERANCE = 0.9


class ScaledVideoStreamAv(VideoStreamAv):
    """PySceneDetect's PyAV stream, returning frames already scaled to the analysis size.

    libswscale shrinks the decoded YUV planes (no colour conversion at full size), then OpenCV
    converts the small frame to the BGR that PySceneDetect's detectors take.
    """

    def __init__(
        self, path_or_io, config: SceneDetectionConfig, name: str = "", motion_vector_fps: float | None = None
    ) -> None:
        super().__init__(path_or_io, name=name, threading_mode=config.decoder_threads.upper(), suppress_output=True)
        codec_context = self._video_stream.codec_context
        if config.skip_deblocking:
            codec_context.options = {"skip_loop_filter": "all"}
        #: Reads the motion vectors of the frames decoded here, for the motion step.
        self.motion: MotionVectorMeter | None = None
        if motion_vector_fps is not None and request_motion_vectors(codec_context):
            self.motion = MotionVectorMeter(sample_stride(float(self.frame_rate), motion_vector_fps))
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

    @property
    def frame_seconds(self) -> float:
        """Presentation time of the frame just read, in seconds."""
        return float(self._frame.time or 0.0)

    @property
    def frame_duration(self) -> float | None:
        """How long the frame just read is shown, when the container says."""
        frame = self._frame
        return float(frame.duration * frame.time_base) if frame.duration and frame.time_base else None

    @property
    def failures(self) -> int:
        return self._decode_failures

    def close(self) -> None:
        """Release the decoder and the file now. PySceneDetect leaves that to its finaliser, and
        the stream's decode generator and container form a reference cycle, so it would run at the
        next cyclic garbage collection: later, at a random point, on another step's clock."""
        VideoStreamAv.__del__(self)

    def read(self, decode: bool = True) -> np.ndarray | bool:
        if not super().read(decode=False):
            return False
        if self.motion is not None:
            self.motion.observe(self._frame)
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


@dataclass(frozen=True)
class DetectedScenes:
    """The scenes of one video, as ``[start, end)`` decode-order frame ranges, and each decoded
    frame's presentation time in seconds from the first frame."""

    scenes: list[tuple[int, int]]
    times: list[float]
    end_time: float  # when the last frame stops being shown
    failures: int  # packets the decoder could not decode
    motion: dict[str, Any] | None = None  # the motion vectors sampled for the motion step

    @property
    def decoded(self) -> int:
        return len(self.times)

    def span(self, start: int, end: int) -> tuple[float, float]:
        """(start_sec, end_sec) of the frames ``[start, end)``."""
        return self.times[start], self.times[end] if end < len(self.times) else self.end_time


def detect_scenes(
    source, config: SceneDetectionConfig, name: str = "", motion_vector_fps: float | None = None
) -> DetectedScenes:
    """The scenes of one video (see :class:`DetectedScenes`).

    The detectors and the cut-to-scene logic are PySceneDetect's, fed frame numbers counted in
    decode order; the frame loop runs in the calling thread rather than in SceneManager's decode
    thread, since the pipeline already runs one such task per core and a second thread per task
    only adds contention. With ``motion_vector_fps``, the decoder also exports motion vectors and
    :class:`~curation.steps.motion.MotionVectorMeter` samples them for the motion step.
    """
    stream = ScaledVideoStreamAv(source, config, name=name, motion_vector_fps=motion_vector_fps)
    try:
        return _detect(stream, config)
    finally:
        stream.close()


def _detect(stream: ScaledVideoStreamAv, config: SceneDetectionConfig) -> DetectedScenes:
    rate = stream.frame_rate
    detector = _detector(config)
    cuts, times, duration = [], [], None
    while (frame := stream.read()) is not False:
        cuts += detector.process_frame(FrameTimecode(len(times), rate), frame)
        times.append(stream.frame_seconds)
        duration = stream.frame_duration
    if not times:
        return DetectedScenes([], [], 0.0, stream.failures)
    cuts += detector.post_process(FrameTimecode(len(times) - 1, rate))
    start, end = FrameTimecode(0, rate), FrameTimecode(len(times), rate)
    scenes = [(a.frame_num, b.frame_num) for a, b in get_scenes_from_cuts(sorted(set(cuts)), start_pos=start, end_pos=end)]
    origin = times[0]
    times = [t - origin for t in times]
    if duration is None:  # the last frame lasts as long as the one before it, or one average frame
        duration = times[-1] - times[-2] if len(times) > 1 else 1.0 / float(rate)
    motion = stream.motion.to_row() if stream.motion is not None else None
    return DetectedScenes(scenes, times, times[-1] + duration, stream.failures, motion)


def split_into_clips(row: Row, config: SceneDetectionConfig, context: StepContext) -> list[dict[str, Any]]:
    """The clips of a probed video row: the columns of each that differ from the video's."""
    uri = row["source_uri"]
    try:
        detected = detect_scenes(context.source(uri).path(), config, uri, context.motion_vector_fps)
    except Exception as exc:  # noqa: BLE001 - PyAV and PySceneDetect raise many types for a bad file
        raise Reject("decode_error", first_line(exc)) from None
    decoded = detected.decoded
    declared = row["num_frames"] or decoded
    if decoded < TRUNCATION_TOLERANCE * declared:
        raise Reject("truncated", f"decoded {decoded} of {declared} declared frames")
    if not detected.scenes:
        raise Reject("no_frames", f"no scene in {decoded} decoded frames ({detected.failures} failed)")
    if detected.motion is not None:
        row[MOTION] = detected.motion
    metadata = VideoMetadata.from_record(json.loads(row[METADATA]))
    clips = []
    for start, end in detected.scenes:
        start_sec, end_sec = detected.span(start, end)
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
            # The clip's average rate (exactly the nominal rate of a constant-rate file).
            "fps": round((end - start) / (end_sec - start_sec), 6) if end_sec > start_sec else row["fps"],
        })  # fmt: skip
    return clips
