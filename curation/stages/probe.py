"""Probe: read a video's size, frame rate, frame count, duration and codec from its container.

Zero-byte, unreadable, non-video and undecodable files become ``probe`` rejects here; truncation
that only shows while decoding is caught by scene detection, which decodes every frame.
"""

from __future__ import annotations

import time
from fractions import Fraction

import av

from curation.errors import first_line
from curation.inputs import filesystem_for
from curation.rows import Row, add_seconds, reject
from curation.video_io import open_source


def probe_video(row: Row, storage_options: dict | None = None) -> Row:
    """Fill width/height/fps/num_frames/duration_sec/codec of a video row, or reject it."""
    started = time.perf_counter()
    uri = row["source_uri"]
    try:
        fs, path = filesystem_for(uri, storage_options)
        if fs.size(path) == 0:
            return add_seconds(reject(row, "probe", "empty_file", "the file has zero bytes"), "probe", 0.0)
        with open_source(uri, storage_options) as source, av.open(source) as container:
            if not container.streams.video:
                return reject(row, "probe", "no_video_stream", f"format {container.format.name} has no video")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                return reject(row, "probe", "no_frame_rate", "the video stream declares no frame rate")
            fps = float(Fraction(rate))
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (container.duration or 0) / av.time_base
            frames = stream.frames or int(round(duration * fps))
            # Decoding one frame tells a real video from a file with a valid-looking header.
            next(container.decode(stream))
            row.update(
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=fps,
                num_frames=frames,
                duration_sec=duration,
                codec=stream.codec_context.name,
            )
    except StopIteration:
        reject(row, "probe", "no_frames", "the video stream holds no decodable frame")
    except FileNotFoundError as exc:
        reject(row, "probe", "not_found", first_line(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a run over millions
        reject(row, "probe", "unreadable", first_line(exc))
    return add_seconds(row, "probe", time.perf_counter() - started)
