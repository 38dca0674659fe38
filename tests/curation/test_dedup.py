"""Near-duplicate removal: the keep rule and the grouping on their own, then `lavie dedup` on the
session's Ray over a manifest with planted near-duplicates, checked against them and against a
brute-force comparison of all pairs, and read back by `lavie stats`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import torch

from curation.dedup.config import DedupConfig
from curation.dedup.groups import keeper_order, near_duplicates
from curation.dedup.kmeans import minibatch_update, nearest
from curation.dedup.run import DedupRequest, run_dedup
from lavie.core.errors import UserError
from lavie.core.manifest import CLIPS_DIR, EMBEDDINGS_DIR, REJECTS_DIR, open_manifest
from lavie.synthetic.embeddings import planted_embeddings, write_embedded_manifest

NAN = float("nan")


# --------------------------------------------------------------------------- the parts
def test_the_kept_clip_has_the_best_aesthetic_then_duration_then_first_id():
    ids = ["c", "a", "b", "d", "e"]
    aesthetic = np.array([5.0, 5.0, 5.0, 6.0, NAN])
    duration = np.array([9.0, 9.0, 3.0, 1.0, 50.0])
    # d has the best score; a and c tie on score and duration, a's id comes first; e has no score.
    assert [ids[i] for i in np.argsort(keeper_order(ids, aesthetic, duration))] == ["d", "a", "c", "b", "e"]


def _unit_rows(*rows: list[float]) -> torch.Tensor:
    x = torch.tensor(rows, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def test_groups_are_linked_at_or_above_the_threshold_and_keep_one_clip_each():
    vectors = _unit_rows([1, 0, 0], [1, 0.1, 0], [1, 0.2, 0], [0, 1, 0], [0, 0, 1], [0, 0.05, 1])
    ids = ["a", "b", "c", "d", "e", "f"]
    aesthetic = np.array([4.0, 6.0, 5.0, 9.0, 5.0, 5.0])
    duration = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 8.0])
    found = near_duplicates(vectors, ids, aesthetic, duration, threshold=0.99)
    pairs = {(ids[r], ids[k]) for r, k in zip(found.rows, found.kept)}
    # a~b~c are linked through b (a and c alone are below 0.99): b, the best, stays; f outlasts e.
    assert pairs == {("a", "b"), ("c", "b"), ("e", "f")}
    assert np.all(found.similarity >= 0.97) and np.all(found.similarity <= 1.0001)
    # At exactly the similarity of a pair, the pair is linked.
    exact = float(vectors[4] @ vectors[5])
    assert len(near_duplicates(vectors[4:], ids[4:], aesthetic[4:], duration[4:], exact).rows) == 1


def test_nearest_centroid_and_the_minibatch_update():
    centroids = np.array([[1.0, 0.0], [0.0, 1.0]])
    points = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float32)
    assert nearest(points, torch.tensor(centroids, dtype=torch.float32)).tolist() == [0, 1, 0]
    seen = np.array([1, 0])
    minibatch_update(centroids, seen, sums=np.array([[1.5, 0.5], [0.0, 0.0]]), counts=np.array([2, 0]))
    # Centroid 0 had 1 point and receives 2: it becomes the mean of the 3.
    assert np.allclose(centroids[0], [(1.0 + 1.5) / 3, 0.5 / 3]) and seen.tolist() == [3, 0]
    assert centroids[1].tolist() == [0.0, 1.0]


# --------------------------------------------------------------------------- lavie dedup on Ray
CONFIG = DedupConfig(cluster_size=400, iterations=8)


@pytest.fixture(scope="module")
def planted():
    return planted_embeddings(3000, dim=64, centers=12, duplicate_fraction=0.08, seed=3)


@pytest.fixture(scope="module")
def manifest(planted, tmp_path_factory):
    return write_embedded_manifest(tmp_path_factory.mktemp("embedded"), planted, parts=3)


@pytest.fixture(scope="module")
def deduplicated(ray_cluster, manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("dedup") / "out"
    record = run_dedup(DedupRequest(str(manifest), str(out), config=CONFIG))
    return out, record


def _drops(out) -> tuple[list[str], list[str]]:
    rejects = ds.dataset(out / REJECTS_DIR).to_table(filter=pc.field("stage") == "dedup").sort_by("clip_id")
    return rejects.column("clip_id").to_pylist(), rejects.column("duplicate_of").to_pylist()


def _brute_force(planted) -> set[str]:
    vectors = torch.from_numpy(planted.vectors.astype(np.float32))
    found = near_duplicates(vectors, planted.clip_ids, planted.aesthetic.astype(np.float64), planted.duration, 0.95)
    return {planted.clip_ids[i] for i in found.rows}


def test_dedup_finds_the_planted_duplicates_as_brute_force_does(deduplicated, planted):
    out, record = deduplicated
    dropped, kept_instead = _drops(out)
    score = planted.score(dropped, kept_instead)
    assert score["recall"] >= 0.98 and score["precision"] == 1.0, score
    # Clustering only ever misses pairs (two near copies on either side of a cluster border).
    exact = _brute_force(planted)
    assert set(dropped) <= exact and len(dropped) >= 0.98 * len(exact)
    assert record["dedup"]["clusters"] == 8 and record["dedup"]["embeddings_compared"] == 3000


def test_the_output_is_a_manifest_with_its_counts_and_embeddings(deduplicated, planted):
    out, record = deduplicated
    dropped, kept_instead = _drops(out)
    opened = open_manifest(str(out))
    assert opened.finished and opened.table.count_rows() == 3000 - len(dropped)
    assert not set(dropped) & set(opened.table.to_table(columns=["clip_id"]).column("clip_id").to_pylist())
    assert set(kept_instead) <= set(opened.table.to_table(columns=["clip_id"]).column("clip_id").to_pylist())
    assert ds.dataset(out / EMBEDDINGS_DIR).count_rows() == 3000 - len(dropped)
    assert sorted(p.name for p in (out / CLIPS_DIR).iterdir()) == [f"part-{i:05d}.parquet" for i in range(3)]
    counts = record["counts"]
    assert (counts["clips_detected"], counts["clips_kept"], counts["clips_rejected"]) == (3000, 3000 - len(dropped), len(dropped))
    assert record["rejects_by_stage"]["dedup"] == {"near_duplicate": len(dropped)}
    assert json.loads((out / "run.json").read_text()) == record
    assert not (out / "_dedup").exists()
    rejects = ds.dataset(out / REJECTS_DIR).to_table(filter=pc.field("stage") == "dedup")
    assert all(detail.startswith("cosine 0.9") for detail in rejects.column("detail").to_pylist())


def test_the_same_seed_gives_the_same_result(deduplicated, manifest, tmp_path):
    out, _ = deduplicated
    again = tmp_path / "again"
    run_dedup(DedupRequest(str(manifest), str(again), config=CONFIG))
    assert _drops(again) == _drops(out)


def test_stats_shows_the_dedup_stage_in_the_funnel(deduplicated, tmp_path):
    out, record = deduplicated
    result = subprocess.run([sys.executable, "-m", "lavie.cli", "stats", str(out), "--out", str(tmp_path / "report"),
                             "--samples", "0"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "report" / "stats.json").read_text())
    [dataset] = stats["datasets"]
    stages = {s["stage"]: s for s in dataset["funnel"]["stages"]}
    assert stages["dedup"]["clips_dropped"] == record["dedup"]["duplicates"] and stages["dedup"]["title"] == "near-duplicates"
    assert dataset["funnel"]["warnings"] == []
    assert dataset["funnel"]["clips_remaining"][-1]["step"] == "near-duplicates"


# --------------------------------------------------------------------------- bad input
def _dedup_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lavie.cli", "dedup", *args], capture_output=True, text=True, timeout=120)


def _one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("lavie dedup: error: ") and expected in lines[0], lines[0]


def test_a_manifest_without_embeddings_is_one_line(manifest, tmp_path):
    bare = tmp_path / "bare"
    (bare / CLIPS_DIR).mkdir(parents=True)
    (bare / CLIPS_DIR / "part-00000.parquet").write_bytes((manifest / CLIPS_DIR / "part-00000.parquet").read_bytes())
    (bare / "_SUCCESS").touch()
    _one_line(_dedup_cli(str(bare), "--out", str(tmp_path / "o")),
              f"{bare}: no embeddings/ beside clips/ (run curation with scoring, which writes them, or give --embeddings)")  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _one_line(_dedup_cli(str(bare), "--out", str(tmp_path / "o"), "--embeddings", str(elsewhere)),
              f"{elsewhere}: no embeddings file named like clips/'s parts")  # fmt: skip


def test_embeddings_given_elsewhere_are_used(ray_cluster, manifest, planted, tmp_path):
    bare = tmp_path / "bare"
    (bare / CLIPS_DIR).mkdir(parents=True)
    for part in (manifest / CLIPS_DIR).iterdir():
        (bare / CLIPS_DIR / part.name).write_bytes(part.read_bytes())
    (bare / "_SUCCESS").touch()
    record = run_dedup(DedupRequest(str(bare), str(tmp_path / "o"), str(manifest / EMBEDDINGS_DIR), CONFIG))
    assert record["dedup"]["duplicates"] >= 0.98 * len(_brute_force(planted))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--threshold", "1.5"], "dedup options: threshold: Input should be less than or equal to 1 (got 1.5)"),
        (["--threshold", "0"], "dedup options: threshold: Input should be greater than 0 (got 0.0)"),
        (["--cluster-size", "1"], "dedup options: cluster_size: Input should be greater than or equal to 2 (got 1)"),
    ],
)
def test_thresholds_out_of_range_are_one_line(manifest, tmp_path, args, expected):
    _one_line(_dedup_cli(str(manifest), "--out", str(tmp_path / "o"), *args), expected)


def test_an_output_folder_that_is_not_empty_is_refused(manifest, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").touch()
    with pytest.raises(UserError, match="not empty; give a new --out folder"):
        run_dedup(DedupRequest(str(manifest), str(tmp_path / "o")))


def test_dedup_from_and_to_object_storage(ray_cluster, s3_server, tmp_path):
    planted = planted_embeddings(600, dim=16, centers=3, duplicate_fraction=0.1, seed=5)
    local = write_embedded_manifest(tmp_path / "manifest", planted, parts=2)
    fs = s3_server.bucket("dedup")
    fs.put(str(local), "dedup/manifest", recursive=True)
    options = s3_server.options()
    record = run_dedup(DedupRequest("s3://dedup/manifest", "s3://dedup/out", config=DedupConfig(cluster_size=200),
                                    storage_options=options))  # fmt: skip
    fs.invalidate_cache()
    assert fs.exists("dedup/out/_SUCCESS") and not fs.exists("dedup/out/_dedup")
    opened = open_manifest("s3://dedup/out", options)
    assert opened.table.count_rows() == 600 - record["dedup"]["duplicates"] and record["dedup"]["duplicates"] > 0
    dropped = opened.rejects.to_table(filter=pc.field("stage") == "dedup")
    score = planted.score(dropped.column("clip_id").to_pylist(), dropped.column("duplicate_of").to_pylist())
    assert score["precision"] == 1.0 and score["recall"] >= 0.95, score
