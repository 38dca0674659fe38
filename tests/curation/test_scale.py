"""Curation at scale: listings read shard by shard, bounded planning memory, bad listings refused
before any work, the manifest unchanged by the sharded workers, and exact resume after a killed
driver or a killed worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from curation.config import build_config
from curation.metadata import match_metadata, read_metadata_table
from curation.metadata_join import join_metadata
from curation.output import OutputDir
from curation.pipeline import CurationRequest, run_curation
from curation.plan import InputSpec, plan_inputs
from lavie.core.errors import UserError
from lavie.synthetic.linked_inputs import write_linked_inputs

GOLDEN = Path(__file__).parent / "data" / "corpus_manifest_before_sharded_workers.json"


def _plan(tmp_path, spec: InputSpec, per_shard: int = 3, write: bool = True):
    out = OutputDir(str(tmp_path / "out"))
    return out, plan_inputs(spec, build_config({"videos_per_shard": per_shard}), out, None, write=write)


def _write_listing(path: Path, rows: list[dict]) -> Path:
    names = list(dict.fromkeys(name for row in rows for name in row))
    rows = [{name: row.get(name) for name in names} for row in rows]
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        lines = [",".join(names)] + [",".join("" if row.get(n) is None else str(row[n]) for n in names) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- planning
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_a_listing_becomes_shard_listings_with_its_metadata(tmp_path, suffix):
    rows = [{"video": f"/data/v{i}.mp4", "caption": f"caption number {i}", "category": "Travel",
             "source_dataset": None, "start_sec": None, "end_sec": None} for i in range(7)]  # fmt: skip
    # v3's timed scene captions, on consecutive rows.
    rows[3:4] = [{**rows[3], "start_sec": 0.0, "end_sec": 2.0}, {**rows[3], "caption": "second scene", "start_sec": 2.0, "end_sec": 4.0}]
    listing = _write_listing(tmp_path / f"list{suffix}", rows)
    out, plan = _plan(tmp_path, InputSpec(inputs_from=str(listing)))
    assert (plan.videos, plan.video_shards, plan.input_rejects, plan.shards) == (7, 3, 0, 3)
    shards = [out.read_listing(f"shard-{s:05d}.parquet").to_pylist() for s in range(3)]
    assert [len(s) for s in shards] == [3, 3, 1]
    assert [r["video"] for s in shards for r in s] == [f"/data/v{i}.mp4" for i in range(7)]
    v3 = json.loads(shards[1][0]["metadata"])
    assert v3["caption"] is None and v3["scene_captions"] == [[0.0, 2.0, "caption number 3"], [2.0, 4.0, "second scene"]]
    assert json.loads(shards[0][0]["metadata"])["category"] == "Travel"
    # The same listing in another format plans to the same digest.
    other = _write_listing(tmp_path / ("again.parquet" if suffix != ".parquet" else "again.jsonl"), rows)
    assert _plan(tmp_path / "b", InputSpec(inputs_from=str(other)))[1].digest == plan.digest


def test_a_replan_writes_nothing_and_finds_the_same_digest(tmp_path):
    listing = _write_listing(tmp_path / "l.parquet", [{"video": f"/d/{i}.mp4"} for i in range(10)])
    out, plan = _plan(tmp_path, InputSpec(inputs_from=str(listing)))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")}
    _, again = _plan(tmp_path, InputSpec(inputs_from=str(listing)), write=False)
    assert again == plan and {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")} == before


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("l.csv", "file,caption\n/a.mp4,x y z\n", "l.csv: missing required column 'video' (has: file, caption)"),
        ("l.csv", "video,captoin\n/a.mp4,x y z\n", "l.csv: unknown column 'captoin' (allowed: video, caption,"),
        ("l.jsonl", '{"video": "/a.mp4", "fps": 3}\n', "l.jsonl: unknown column 'fps'"),
        ("l.csv", "video\n/a.mp4\n/b.mp4\n/a.mp4\n", "/a.mp4 (row 3) is listed twice (first as input 1); list each video once"),
        ("l.parquet", "not a parquet file at all", "l.parquet: cannot read this listing:"),
        ("l.jsonl", '{"video": "/a.mp4"}\n{"video": \n', "l.jsonl: cannot read this listing:"),
        ("l.txt", "/a.mp4\n", "l.txt: a listing must be .csv, .jsonl or .parquet, not '.txt'"),
        ("l.csv", "video,start_sec,end_sec\n/a.mp4,3,1\n", "l.csv: row 1 (/a.mp4) needs start_sec < end_sec"),
    ],
)
def test_a_bad_listing_is_one_line_before_any_work(tmp_path, name, content, message):
    listing = tmp_path / name
    listing.write_text(content)
    with pytest.raises(UserError) as info:
        _plan(tmp_path, InputSpec(inputs_from=str(listing)), per_shard=1)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out" / "_progress" / "listing").exists()  # nothing left behind


def test_missing_listing_and_no_input_are_one_line(tmp_path):
    with pytest.raises(UserError, match=r"nope\.parquet: listing not found$"):
        _plan(tmp_path, InputSpec(inputs_from=str(tmp_path / "nope.parquet")))
    with pytest.raises(UserError, match="no input given"):
        _plan(tmp_path, InputSpec())
    with pytest.raises(UserError, match="--metadata goes with INPUT paths"):
        _plan(tmp_path, InputSpec(metadata="m.csv", inputs_from="l.csv"))


def test_an_input_named_by_two_arguments_is_listed_twice(tmp_path):
    (tmp_path / "v").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "v" / name).write_bytes(b"x")
    with pytest.raises(UserError, match=r"b\.mp4 is listed twice \(first as input 2\)"):
        _plan(tmp_path, InputSpec(paths=(str(tmp_path / "v"), str(tmp_path / "v" / "b.mp4"))))


def test_the_metadata_join_equals_matching_in_memory(tmp_path):
    """Bucketed by file name, matched per bucket, merged back in input order: the same result as
    matching the whole metadata against every input at once, ambiguous suffixes included."""
    uris = [f"/data/{d}/{s}/clip{i % 37}.mp4" for i, (d, s) in enumerate((d, s) for d in "abcdefgh" for s in range(40))]
    uris += ["s3://bucket/raw/unique.mp4"]
    rows = [{"video": f"{d}/3/clip{('abcdefgh'.index(d) * 40 + 3) % 37}.mp4", "caption": f"by suffix {d}"} for d in "abcd"]
    rows += [{"video": "clip5.mp4", "caption": "ambiguous: many inputs end so"},
             {"video": "s3://bucket/raw/unique.mp4", "caption": "by full uri", "category": "Music"},
             {"video": "nowhere.mp4", "caption": "names nothing"},
             {"video": "gone.mp4", "caption": "names a missing argument"}]  # fmt: skip
    metadata = _write_listing(tmp_path / "m.jsonl", rows)
    rejects = []
    joined = list(join_metadata(iter(uris), str(metadata), None, tmp_path / "work",
                                lambda *reject: rejects.append(reject), missing=["/data/gone.mp4"]))  # fmt: skip
    assert [uri for uri, _ in joined] == uris  # input order
    expected = match_metadata(read_metadata_table(str(metadata)), tuple(uris), str(metadata))
    assert {uri: json.loads(record) for uri, record in joined if json.loads(record)["caption"]} == {
        uri: meta.to_record() for uri, meta in expected.by_uri.items()
    }
    assert sorted((key, reason) for key, reason, _ in rejects) == [("clip5.mp4", "ambiguous_metadata"), ("nowhere.mp4", "not_found")]


def _planning_peak(tmp_path: Path, count: int) -> int:
    listing = tmp_path / f"l{count}.parquet"
    pq.write_table(pa.table({"video": [f"/v/{i:07d}.mp4" for i in range(count)],
                             "caption": [f"a caption of input {i}" for i in range(count)]}),
                   listing, row_group_size=10_000)  # fmt: skip
    tracemalloc.start()
    try:
        _plan(tmp_path / f"o{count}", InputSpec(inputs_from=str(listing)), per_shard=64)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_planning_memory_does_not_grow_with_the_inputs(tmp_path):
    """Python memory at 140,000 inputs stays within 2 MB of its peak at 70,000 (under 30 bytes per
    added input; the planner this replaced kept ~14 KB per input): it holds a shard of rows, a
    batch of the listing and a fixed buffer of hashes, never a list of the inputs."""
    small, large = _planning_peak(tmp_path, 70_000), _planning_peak(tmp_path, 140_000)
    assert large - small < 2 * 2**20, (small, large)


# --------------------------------------------------------------------------- running
#: Columns added since the golden manifest was written (by the motion step and `lavie dedup`):
#: compared apart from it.
NEWER_COLUMNS = ("motion_score", "motion_method", "overlay_score", "duplicate_of")


def _normalised(out: Path, folder: Path) -> dict[str, list[dict]]:
    def norm(rows):
        result = []
        for row in rows:
            row = {key: value for key, value in row.items() if key not in NEWER_COLUMNS}
            row = {**row, "source_uri": os.path.relpath(row["source_uri"], folder)}
            row.pop("clip_id", None)
            if row.get("detail"):
                row["detail"] = row["detail"].replace(str(folder), "{corpus}")
            result.append(row)
        return sorted(result, key=lambda r: (r["source_uri"], -1 if r.get("start_frame") is None else r["start_frame"]))

    return {name: norm(pads.dataset(out / name, format="parquet").to_table().to_pylist()) for name in ("clips", "rejects")}


def test_the_manifest_is_row_for_row_the_one_written_before_sharded_workers(ray_cluster, corpus, tmp_path):
    """The fixture was written by the driver-side pipeline this layout replaced, on this corpus."""
    request = CurationRequest(inputs=(str(corpus.folder), str(corpus.folder / "missing.mp4")), out=str(tmp_path / "out"),
                              metadata=str(corpus.metadata), config=build_config({"videos_per_shard": 2}))  # fmt: skip
    run_curation(request)
    assert _normalised(tmp_path / "out", corpus.folder) == json.loads(GOLDEN.read_text())
    clips = pads.dataset(tmp_path / "out" / "clips", format="parquet").to_table().to_pylist()
    assert all(c["motion_method"] == "motion_vectors" and c["motion_score"] > 0 for c in clips)  # the scene videos move


def test_a_listing_with_the_metadata_gives_the_same_manifest(ray_cluster, corpus, tmp_path):
    table = read_metadata_table(str(corpus.metadata)).to_pylist()
    rows = [{**row, "video": str(corpus.folder / row["video"])} for row in table if row["video"] != "missing.mp4"]
    names = {row["video"] for row in rows}
    rows += [{"video": str(path)} for path in sorted(corpus.folder.rglob("*.mp4")) if str(path) not in names]
    rows.sort(key=lambda row: row["video"])  # a video's timed rows together
    listing = _write_listing(tmp_path / "listing.parquet", rows)
    run_curation(CurationRequest(out=str(tmp_path / "out"), inputs_from=str(listing), config=build_config({"videos_per_shard": 3})))
    golden = json.loads(GOLDEN.read_text())
    golden["rejects"] = [r for r in golden["rejects"] if r["source_uri"] != "missing.mp4"]  # not listed here
    assert _normalised(tmp_path / "out", corpus.folder) == golden


#: Inputs of the kill tests; LAVIE_RESUME_INPUTS=10000 runs them at the scale BENCHMARKS.md records.
RESUME_INPUTS = int(os.environ.get("LAVIE_RESUME_INPUTS", "600"))


@pytest.fixture(scope="module")
def many_inputs(tmp_path_factory):
    return write_linked_inputs(tmp_path_factory.mktemp("linked"), RESUME_INPUTS)


def _command(inputs, out: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "lavie.cli", "curate", "--inputs-from", str(inputs.listing), "--out", str(out),
            "--videos-per-shard", "30", "--min-height", "0", "--address", address, "--quiet"]  # fmt: skip


def _part_files(out: Path, shards: list[int]) -> dict[str, tuple[int, int]]:
    files = [out / folder / f"part-{s:05d}.parquet" for s in shards for folder in ("clips", "rejects")]
    return {str(f.relative_to(out)): (f.stat().st_mtime_ns, f.stat().st_size) for f in files}


def _assert_exact(out: Path, inputs) -> None:
    clips = pads.dataset(out / "clips", format="parquet").to_table(columns=["source_uri", "start_frame"])
    rejects = pads.dataset(out / "rejects", format="parquet").to_table(columns=["source_uri", "start_frame"])
    keys = list(zip(clips.column("source_uri").to_pylist(), clips.column("start_frame").to_pylist()))
    keys += list(zip(rejects.column("source_uri").to_pylist(), rejects.column("start_frame").to_pylist()))
    assert len(keys) == len(set(keys)) == inputs.clips  # nothing lost, nothing twice
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["inputs"] == inputs.count and run["counts"]["clips_detected"] == inputs.clips
    assert (out / "_SUCCESS").exists()


def _done_shards(out: Path) -> list[int]:
    return sorted(int(p.name[6:11]) for p in (out / "_progress").glob("shard-*.json"))


def test_a_killed_driver_resumes_exactly_and_finished_shards_keep_their_files(ray_cluster, many_inputs, tmp_path):
    out = tmp_path / "out"
    command = _command(many_inputs, out, ray_cluster)
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(_done_shards(out)) < 3:
        assert driver.poll() is None, "the driver finished before it could be interrupted"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done = _done_shards(out)
    assert 3 <= len(done) < 20 and not (out / "_SUCCESS").exists()
    finished = _part_files(out, done)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _part_files(out, done) == finished  # the finished shards were not run again
    _assert_exact(out, many_inputs)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already complete, nothing to do" in " ".join(again.stderr.split())


def _shard_worker_pids() -> list[int]:
    result = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True)
    return [int(line.split()[0]) for line in result.stdout.splitlines() if "ray::run_shard" in line]


def test_a_killed_worker_is_retried_without_losing_or_repeating_rows(ray_cluster, many_inputs, tmp_path):
    out = tmp_path / "out"
    command = _command(many_inputs, out, ray_cluster)
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 240, None
    while time.monotonic() < deadline and killed is None:
        assert driver.poll() is None, "the run finished before a worker could be killed"
        pids = _shard_worker_pids() if len(_done_shards(out)) >= 2 else []
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    assert killed is not None
    _, stderr = driver.communicate(timeout=600)
    if driver.returncode != 0:  # the retry budget is Ray's; a re-run of the same command finishes it
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr
    _assert_exact(out, many_inputs)


@pytest.mark.parametrize("finished", [False, True])
def test_a_run_started_before_shard_listings_is_refused_in_one_line(tmp_path, finished):
    """Such a run's plan.json listed every input (and its shards were 16 consecutive sorted
    inputs): it cannot resume here, and the message says why and what to do."""
    out = tmp_path / "out"
    (out / "_progress").mkdir(parents=True)
    (out / "_progress" / "plan.json").write_text(json.dumps({"inputs": ["/v/a.mp4"], "missing": [], "metadata": None, "config": {}}))
    (out / "_progress" / "shard-00000.json").write_text("{}")
    if finished:
        (out / "_SUCCESS").write_text("")
    listing = _write_listing(tmp_path / "l.csv", [{"video": "/v/a.mp4"}])
    with pytest.raises(UserError) as info:
        run_curation(CurationRequest(out=str(out), inputs_from=str(listing)))
    expected = "holds a finished run of an earlier lavie" if finished else "holds an unfinished run of an earlier lavie"
    assert str(info.value).startswith(f"{out}: {expected}") and "give a new --out" in str(info.value)
    assert "\n" not in str(info.value) and not (out / "_progress" / "listing").exists()
