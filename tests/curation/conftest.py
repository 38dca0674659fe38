"""A generated video corpus whose every expected curation outcome is known in advance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from lavie.synthetic import write_scene_video


@dataclass
class Corpus:
    folder: Path
    metadata: Path
    # (file name, start_frame, end_frame) → expected outcome: "kept" or "stage/reason"
    clips: dict[tuple[str, int, int], str] = field(default_factory=dict)
    # file name → "stage/reason" for inputs rejected whole
    inputs: dict[str, str] = field(default_factory=dict)


def _write_audio_only(path: Path) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), dtype=np.float32)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def build_corpus(root: Path) -> Corpus:
    folder = root / "videos"
    corpus = Corpus(folder=folder, metadata=root / "metadata.csv")
    # 4 scenes; the 10-frame tail is a real scene that the 16-frame minimum drops.
    write_scene_video(folder / "city.mp4", (40, 24, 50, 10), 1280, 720, seed=1)
    corpus.clips.update({
        ("city.mp4", 0, 40): "kept", ("city.mp4", 40, 64): "kept",
        ("city.mp4", 64, 114): "kept", ("city.mp4", 114, 124): "min_frames/too_short",
    })
    # 1080p with per-scene captions: the second scene's caption is too short.
    write_scene_video(folder / "sub/beach.mp4", (30, 36), 1920, 1080, seed=2)
    corpus.clips.update({("sub/beach.mp4", 0, 30): "kept", ("sub/beach.mp4", 30, 66): "caption/too_few_words"})
    write_scene_video(folder / "small.mp4", (20, 20), 640, 360, seed=3)
    corpus.clips.update({("small.mp4", 0, 20): "resolution/too_small", ("small.mp4", 20, 40): "resolution/too_small"})
    write_scene_video(folder / "nocaption.mp4", (24,), 1280, 720, seed=4)
    corpus.clips[("nocaption.mp4", 0, 24)] = "caption/missing_caption"
    write_scene_video(folder / "url.mp4", (24,), 1280, 720, seed=5)
    corpus.clips[("url.mp4", 0, 24)] = "caption/url_only_caption"
    (folder / "empty.mp4").write_bytes(b"")
    corpus.inputs["empty.mp4"] = "probe/empty_file"
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    corpus.inputs["corrupt.mp4"] = "probe/unreadable"
    _write_audio_only(folder / "audio.mp4")
    corpus.inputs["audio.mp4"] = "probe/no_video_stream"
    full = write_scene_video(root / "tmp_full.mp4", (60, 60), 1280, 720, seed=6, faststart=True).path
    data = full.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) * 2 // 5])
    full.unlink()
    corpus.inputs["truncated.mp4"] = "scene_detect/truncated"
    corpus.inputs["missing.mp4"] = "input/not_found"
    corpus.metadata.write_text(
        "video,caption,category,source_dataset,start_sec,end_sec\n"
        "city.mp4,a busy city street at night with neon lights,Travel,vimeo25m,,\n"
        "sub/beach.mp4,waves rolling onto a sandy beach at sunset,Travel,vimeo25m,0,1.25\n"
        "sub/beach.mp4,two words,Travel,vimeo25m,1.25,2.75\n"
        "small.mp4,a small low resolution clip of a park,Documentary,webvid10m,,\n"
        "url.mp4,https://vimeo.com/123456,Music,vimeo25m,,\n"
        "missing.mp4,a file that was never downloaded,Music,vimeo25m,,\n"
    )
    return corpus


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("corpus"))
