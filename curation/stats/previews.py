"""Preview images of the drawn clips: decoded on Ray, one task per source video, written beside
the report as small animated WebP files.

Each task opens its video once with the platform's reader (:func:`lavie.core.video.open_video`,
scaling in the decoder), reads :data:`PREVIEW_FRAMES` frames spread over each clip's range (a
whole-input reject has none: the video's first :data:`PREVIEW_SECONDS` seconds), encodes them
with Pillow and writes the file itself; the driver receives only each preview's name and, when
it could not be made, the reason. Tasks go through :func:`lavie.core.tasks.bounded_tasks`, so
the work is that of the few hundred clips the report shows, whatever the manifest's size.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lavie.core.errors import message_line, require_ray
from lavie.core.storage import SealedOptions, atomic_write, is_local, join, local_path
from lavie.core.tasks import bounded_tasks
from lavie.core.video import VideoReadError, open_video

FILES_DIR = "report_files"
PREVIEW_WIDTH = 256  # at most, in pixels; the height follows the aspect ratio (at most the same)
PREVIEW_FRAMES = 12
PREVIEW_SECONDS = 2.0  # how long the animation plays, and how much of a video a reject without range shows
_QUALITY = 60


@dataclass(frozen=True)
class PreviewRequest:
    """One preview: a frame range ``[start_frame, end_frame)`` of a video (None: its beginning)."""

    source_uri: str
    start_frame: int | None
    end_frame: int | None
    width: int | None
    height: int | None

    @property
    def name(self) -> str:
        """The file name: the same clip gets the same file, whichever group or manifest drew it."""
        identity = f"{self.source_uri}#{self.start_frame}#{self.end_frame}"
        return hashlib.sha1(identity.encode()).hexdigest()[:20] + ".webp"


def request_for(row: dict[str, Any]) -> PreviewRequest:
    start, end = row.get("start_frame"), row.get("end_frame")
    if start is None or end is None:
        start = end = None
    return PreviewRequest(row["source_uri"] or "", start, end, row.get("width"), row.get("height"))


def preview_size(width: int | None, height: int | None) -> tuple[int, int] | None:
    """(height, width) to decode at: at most :data:`PREVIEW_WIDTH` on either side, even, aspect
    kept; None when the manifest does not say the video's size (the frames are scaled after)."""
    if not width or not height or width <= 0 or height <= 0:
        return None
    scale = min(1.0, PREVIEW_WIDTH / max(width, height))
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def frame_indices(start: int | None, end: int | None, total: int, fps: float) -> list[int]:
    """The frames to show, spread evenly over ``[start, end)``; without a range, over the video's
    first :data:`PREVIEW_SECONDS`. Raises VideoReadError for a range the video does not hold."""
    if start is None or end is None:
        start, end = 0, min(total, max(1, round(PREVIEW_SECONDS * (fps or 24))))
    if start < 0 or end <= start:
        raise VideoReadError(f"frame range [{start}, {end}) is empty or negative")
    if end > total:
        raise VideoReadError(f"the clip ends at frame {end}, the video has {total}")
    count = min(PREVIEW_FRAMES, end - start)
    return sorted({int(i) for i in np.linspace(start, end - 1, count).round()})


def encode_webp(frames: np.ndarray) -> bytes:
    """An animated WebP of uint8 ``(N, H, W, 3)`` frames, no wider or taller than
    :data:`PREVIEW_WIDTH`, playing once through in :data:`PREVIEW_SECONDS`, looping."""
    images = []
    for frame in frames:
        image = Image.fromarray(frame)
        if max(image.size) > PREVIEW_WIDTH:
            image.thumbnail((PREVIEW_WIDTH, PREVIEW_WIDTH))
        images.append(image)
    out = io.BytesIO()
    duration = int(1000 * PREVIEW_SECONDS / max(1, len(images)))
    images[0].save(out, format="WEBP", save_all=True, append_images=images[1:], duration=duration, loop=0,
                   quality=_QUALITY, method=2)  # fmt: skip
    return out.getvalue()


def render_video(source_uri: str, requests: list[PreviewRequest], out: str, storage: SealedOptions) -> dict[str, str | None]:
    """Make every preview of one video (the Ray task). Returns, per preview name, None when its
    file was written under ``out/report_files/``, else why not; never raises for a bad video."""
    options = storage.open()
    results: dict[str, str | None] = {}
    if not source_uri:
        return {r.name: "the row has no source_uri" for r in requests}
    try:
        reader = open_video(source_uri, options, size=preview_size(requests[0].width, requests[0].height))
    except VideoReadError as exc:
        return {r.name: f"cannot open the video: {message_line(exc)}" for r in requests}
    with reader:
        for request in requests:
            try:
                indices = frame_indices(request.start_frame, request.end_frame, len(reader), reader.fps)
                data = encode_webp(reader.read(indices))
            except VideoReadError as exc:
                results[request.name] = f"cannot decode the clip: {message_line(exc)}"
                continue
            except Exception as exc:  # noqa: BLE001 - one bad clip must not cost the others their previews
                results[request.name] = f"cannot make a preview: {message_line(exc)}"
                continue
            atomic_write(join(out, FILES_DIR, request.name), data, options)
            results[request.name] = None
    return results


def by_video(requests: Iterable[PreviewRequest]) -> dict[str, list[PreviewRequest]]:
    """The distinct requests grouped by source video, in first-seen order."""
    grouped: dict[str, dict[str, PreviewRequest]] = {}
    for request in requests:
        grouped.setdefault(request.source_uri, {}).setdefault(request.name, request)
    return {uri: list(found.values()) for uri, found in grouped.items()}


def make_previews(
    requests: Iterable[PreviewRequest], out: str, storage_options: dict[str, Any] | None = None,
    connect: Callable[[], None] | None = None,
) -> dict[str, str | None]:  # fmt: skip
    """Make the previews on Ray, one task per source video through a bounded window; returns, per
    preview name, None when written, else the reason. Connects (``connect``) only when there is work."""
    videos = by_video(requests)
    if not videos:
        return {}
    (connect or (lambda: require_ray("lavie stats")))()
    import ray

    if is_local(out):  # the tasks' working folder need not be the driver's
        out = os.path.abspath(local_path(out))
    task = ray.remote(render_video).options(num_cpus=1, max_retries=1)
    storage = SealedOptions.seal(storage_options)
    results: dict[str, str | None] = {}
    for done in bounded_tasks(task, ((uri, found, out, storage) for uri, found in videos.items())):
        results.update(done)
    return results
