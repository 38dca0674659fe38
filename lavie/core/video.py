"""Video files: the one reader and the one writer of the platform.

Reading. A frame's index is its decode-order index: the n-th frame the decoder outputs (frames
come out of a decoder in presentation order), for constant and variable frame rates alike. Frames
come out upright: the container's display rotation is applied. :func:`open_video` uses decord
where it can open the file (it seeks straight to the wanted frames and scales them inside the
decoder) and PyAV otherwise (every codec FFmpeg decodes: AV1 among them, which decord 0.6 cannot
open). Curation, the training stream and ``lavie check`` all decode through it, so a clip that
curation keeps is one the trainer can read, frame for frame.

Writing. :func:`write_video` encodes RGB frames with PyAV (H.264 by default).
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from lavie.core.errors import first_line
from lavie.core.storage import is_local, local_path, open_input


class VideoReadError(Exception):
    """A video (or some of its frames) cannot be decoded; the message says which and why."""


class VideoFrames(Protocol):
    """Frames of one video by decode-order index."""

    backend: str

    def __len__(self) -> int: ...

    @property
    def fps(self) -> float:
        """The average frame rate."""
        ...

    def timestamps(self) -> np.ndarray:
        """Each frame's presentation time in seconds, in decode order."""
        ...

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 ``(len(indices), H, W, 3)`` RGB frames, upright, in the order asked."""
        ...

    def close(self) -> None: ...


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned as it is displayed: ``rotation`` is FFmpeg's display-matrix angle,
    the degrees (a multiple of 90) by which the frame turns counterclockwise."""
    turns = (int(round(rotation / 90)) % 4) if rotation else 0
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


def displayed_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` coded frame as displayed."""
    return (height, width) if int(round(rotation / 90)) % 2 else (width, height)


# --------------------------------------------------------------------------- decord
class DecordFrames:
    """decord's reader: random access by index, scaling in the decoder, display rotation applied
    by decord itself (sizes are asked for in the displayed orientation)."""

    backend = "decord"

    def __init__(self, source: Any, size: tuple[int, int] | None, threads: int) -> None:
        import decord

        height, width = size if size else (-1, -1)
        self._reader = decord.VideoReader(source, width=width, height=height, num_threads=threads)

    def __len__(self) -> int:
        return len(self._reader)

    @property
    def fps(self) -> float:
        return float(self._reader.get_avg_fps())

    def timestamps(self) -> np.ndarray:
        return self._reader.get_frame_timestamp(range(len(self)))[:, 0].astype(np.float64)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self._reader.get_batch(list(indices)).asnumpy()

    def close(self) -> None:
        self._reader = None


# --------------------------------------------------------------------------- PyAV
INDEX_CACHE_SIZE = 64
_INDEXES: OrderedDict[str, tuple[list[int], list[int]]] = OrderedDict()


class PyAVFrames:
    """FFmpeg through PyAV, for whatever decord cannot open.

    Opening demuxes the whole stream once, without decoding, to index its frames: the presentation
    timestamps in order (frame ``i`` is the i-th) and the keyframes among them. Indexes are kept
    for the last :data:`INDEX_CACHE_SIZE` videos a process opened (``key``), as the training
    stream opens a video for every sample it draws from it. Reading seeks to the keyframe at or
    before a wanted frame and decodes forward from there.
    """

    backend = "pyav"

    def __init__(self, source: Any, size: tuple[int, int] | None, threads: int, key: str | None = None) -> None:
        self._container = av.open(source)
        try:
            self._stream = self._container.streams.video[0]
        except IndexError:
            self._container.close()
            raise VideoReadError("no video stream") from None
        self._stream.thread_type = "AUTO" if threads != 1 else "SLICE"
        self._size = size
        index = _INDEXES.get(key) if key else None
        if index is None:
            index = self._build_index()
            if key:
                _INDEXES[key] = index
                while len(_INDEXES) > INDEX_CACHE_SIZE:
                    _INDEXES.popitem(last=False)
        else:
            _INDEXES.move_to_end(key)
        self._pts, self._keyframes = index
        self._index = {pts: i for i, pts in enumerate(self._pts)}

    def _build_index(self) -> tuple[list[int], list[int]]:
        """(presentation timestamps in order, positions of the keyframes among them)."""
        stamps, keys = [], []
        for packet in self._container.demux(self._stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if packet.size and stamp is not None:
                stamps.append(stamp)
                keys.append(packet.is_keyframe)
        order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
        return [stamps[i] for i in order], [i for i, j in enumerate(order) if keys[j]] or [0]

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def fps(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else 0.0

    def timestamps(self) -> np.ndarray:
        start = self._pts[0] if self._pts else 0
        return (np.asarray(self._pts, dtype=np.float64) - start) * float(self._stream.time_base)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = sorted(set(int(i) for i in indices))
        if wanted and not 0 <= wanted[0] <= wanted[-1] < len(self):
            raise VideoReadError(f"frames {wanted[0]}..{wanted[-1]} asked, the video has {len(self)}")
        found: dict[int, np.ndarray] = {}
        frames, position = None, -1  # the decoder since the last seek, and its last frame's index
        for target in wanted:
            keyframe = self._keyframes[bisect.bisect_right(self._keyframes, target) - 1]
            # Seek unless decoding on reaches the target without a keyframe to jump to first.
            if frames is None or target <= position or keyframe > position:
                self._container.seek(self._pts[keyframe], stream=self._stream, backward=True)
                frames, position = self._container.decode(self._stream), -1
            for frame in frames:
                index = self._index.get(frame.pts, -1)
                if index < 0:
                    continue
                position = index
                if index in wanted:
                    found[index] = self._rgb(frame)
                if index >= target:
                    break
            if target not in found:
                raise VideoReadError(f"frame {target} did not decode")
        return np.stack([found[int(i)] for i in indices]) if indices else np.zeros((0, 0, 0, 3), np.uint8)

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        rotation = frame.rotation
        if self._size is None:
            rgb = frame.to_ndarray(format="rgb24")
        else:
            height, width = self._size
            coded_width, coded_height = displayed_size(width, height, rotation)  # the inverse turn
            rgb = frame.reformat(width=coded_width, height=coded_height, format="rgb24", interpolation="BILINEAR").to_ndarray()
        return upright(rgb, rotation)

    def close(self) -> None:
        self._container.close()


# --------------------------------------------------------------------------- the reader
class VideoReader:
    """Frames of one video (a local path or an fsspec URL), upright, at ``size`` (height, width,
    as displayed) or the video's own size. A context manager; see the module docstring."""

    def __init__(
        self, uri: str, storage_options: Mapping[str, Any] | None = None, *, size: tuple[int, int] | None = None,
        threads: int = 1,
    ) -> None:  # fmt: skip
        self.uri = uri
        self._storage_options, self._size, self._threads = storage_options, size, threads
        self._stack = ExitStack()
        try:
            self._frames = self._open()
        except BaseException:
            self._stack.close()
            raise

    def _open(self) -> VideoFrames:
        with open_input(self.uri, self._storage_options) as source:
            try:
                return DecordFrames(source, self._size, self._threads)  # decord reads a file object whole
            except Exception:  # noqa: BLE001 - decord refuses the file: FFmpeg through PyAV reads it
                pass
        return self._open_pyav()

    def _open_pyav(self) -> VideoFrames:
        source = self._stack.enter_context(open_input(self.uri, self._storage_options))  # open while reading
        try:
            frames = PyAVFrames(source, self._size, self._threads, key=self._index_key())
        except VideoReadError as exc:
            raise VideoReadError(f"{self.uri}: {exc}") from None
        except Exception as exc:  # PyAV raises many types for what it cannot decode
            raise VideoReadError(f"{self.uri}: {first_line(exc)}") from None
        self._stack.callback(frames.close)
        return frames

    def _index_key(self) -> str:
        """The video's identity for the index cache: a local file changes with its size and time."""
        if not is_local(self.uri):
            return self.uri
        stat = os.stat(local_path(self.uri))
        return f"{self.uri}|{stat.st_size}|{stat.st_mtime_ns}"

    @property
    def backend(self) -> str:
        return self._frames.backend

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def fps(self) -> float:
        """The average frame rate."""
        return self._frames.fps

    def timestamps(self) -> np.ndarray:
        """Each frame's presentation time in seconds from the first, in decode order."""
        return self._frames.timestamps()

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 ``(len(indices), H, W, 3)`` RGB frames by decode-order index, upright."""
        try:
            return self._frames.read(indices)
        except VideoReadError as exc:
            raise VideoReadError(f"{self.uri}: {exc}") from None
        except Exception as exc:  # decord and PyAV raise many types for a damaged stream
            if self._frames.backend == "decord":  # decord opens some files it cannot decode
                return self._read_with_pyav(indices)  # (H.264 48 pixels wide, say): FFmpeg can
            raise VideoReadError(f"{self.uri}: frames {list(indices)[:4]}...: {first_line(exc)}") from None

    def _read_with_pyav(self, indices: Sequence[int]) -> np.ndarray:
        """Switch this reader to PyAV (same decode-order indices) and read ``indices`` with it."""
        self._frames.close()
        self._frames = self._open_pyav()
        return self.read(indices)

    def close(self) -> None:
        self._frames.close()
        self._stack.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_video(
    uri: str, storage_options: Mapping[str, Any] | None = None, *, size: tuple[int, int] | None = None, threads: int = 1
) -> VideoReader:
    """A :class:`VideoReader` over ``uri``; :class:`VideoReadError` when nothing can decode it."""
    try:
        return VideoReader(uri, storage_options, size=size, threads=threads)
    except VideoReadError:
        raise
    except Exception as exc:  # a missing file, or fsspec's errors for a remote one
        raise VideoReadError(f"{uri}: {first_line(exc)}") from None


# --------------------------------------------------------------------------- writing
def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    crf: int = 23,
    preset: str = "medium",
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
    faststart: bool = False,
    options: Mapping[str, str] | None = None,
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
) -> Path:
    """Encode RGB uint8 frames ``(H, W, 3)`` at ``fps`` into ``path`` (its folder is created).

    ``crf``/``preset``/``gop`` are x264's (other codecs take ``options``). ``faststart`` puts the
    index before the frames, as streaming sites do. ``timestamps`` (seconds, one per frame) make a
    variable-frame-rate file; ``rotation`` stores a display rotation (FFmpeg's angle, degrees
    counterclockwise) without turning the pixels, as phones do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container_options = {"movflags": "faststart"} if faststart else {}
    time_base = Fraction(1, 90000) if timestamps is not None else None
    stream = None
    with av.open(str(path), mode="w", options=container_options) as container:
        for index, array in enumerate(frames):
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = array.shape[:2]
                stream.pix_fmt = pix_fmt
                if time_base is not None:
                    stream.codec_context.time_base = time_base
                    stream.time_base = time_base
                if rotation:
                    stream.set_display_rotation(rotation)
                codec_options = {"crf": str(crf), "preset": preset} if codec in ("libx264", "libx265") else {}
                if gop is not None:
                    codec_options["g"] = str(gop)
                stream.options = {**codec_options, **dict(options or {})}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            if time_base is not None:
                frame.pts, frame.time_base = round(timestamps[index] / time_base), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return path
