"""Probe: a video's displayed size, frame rate, frame count, duration and codec, from its container.

The size is as displayed: a phone video stored 1920x1080 with a 90-degree display rotation is
1080 wide and 1920 high, which is what the resolution filter judges and what the training stream
decodes (upright). Zero-byte, unreadable, non-video and undecodable files are rejected here;
truncation that only shows while decoding is caught by scene detection, which decodes every frame.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av

from curation.rows import Row
from curation.steps.base import Reject, StepContext
from lavie.core.errors import first_line
from lavie.core.video import displayed_size


def probe_video(row: Row, config: None, context: StepContext) -> None:
    """Fill width/height/fps/num_frames/duration_sec/codec of a video row."""
    try:
        path = context.source(row["source_uri"]).path()
        if os.path.getsize(path) == 0:
            raise Reject("empty_file", "the file has zero bytes")
        with av.open(path) as container:
            if not container.streams.video:
                raise Reject("no_video_stream", f"format {container.format.name} has no video")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise Reject("no_frame_rate", "the video stream declares no frame rate")
            fps = float(Fraction(rate))
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (container.duration or 0) / av.time_base
            # Decoding one frame tells a real video from a file with a valid-looking header, and
            # brings the display rotation with it.
            first = next(container.decode(stream), None)
            if first is None:
                raise Reject("no_frames", "the video stream holds no decodable frame")
            width, height = displayed_size(stream.codec_context.width, stream.codec_context.height, first.rotation)
            row.update(
                width=width,
                height=height,
                fps=fps,
                num_frames=stream.frames or int(round(duration * fps)),
                duration_sec=duration,
                codec=stream.codec_context.name,
            )
    except Reject:
        raise
    except FileNotFoundError as exc:
        raise Reject("not_found", first_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - PyAV and fsspec raise many types for a bad file
        raise Reject("unreadable", first_line(exc)) from None
