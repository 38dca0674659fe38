"""The core: config loading with dotted overrides, the storage-option rule, credentials, atomic
writes, and the manifest contract's ``_SUCCESS`` rule."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import Field

from lavie.core.config import StrictModel, apply_override, load_config, parse_key_value, read_mapping
from lavie.core.errors import UserError
from lavie.core.manifest import CLIP_SCHEMA, CLIPS_DIR, SUCCESS_FILE, open_manifest
from lavie.core.storage import (
    REDACTED,
    atomic_write,
    filesystem,
    is_local,
    normalize_options,
    parse_storage_options,
    redact,
    redact_command_line,
    replace_folder,
    split_secrets,
)
from lavie.synthetic import clip_row, write_clip_manifest


class Inner(StrictModel):
    steps: int = Field(1, ge=1)
    names: list[str] = Field(default_factory=list)


class Outer(StrictModel):
    inner: Inner = Field(default_factory=Inner)
    items: list[Inner] = Field(default_factory=list)


# --------------------------------------------------------------------------- config
def test_dotted_overrides_reach_dicts_and_list_items(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("items: [{steps: 1}, {steps: 2}]\n")
    config = load_config(Outer, path, {"inner.steps": 5, "items.1.steps": 7})
    assert config.inner.steps == 5 and [i.steps for i in config.items] == [1, 7]
    raw: dict = {"items": [{}]}
    apply_override(raw, "items.0.names=[a, b]")  # VALUE is YAML
    assert raw == {"items": [{"names": ["a", "b"]}]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("inner: {stepz: 1}\n", "inner.stepz: unknown key"),
        ("inner: {steps: 0}\n", "inner.steps: Input should be greater than or equal to 1 (got 0)"),
        ("- a list\n", "a config must be a mapping of keys to values"),
        ("inner: [\n", "not valid YAML"),
    ],
)
def test_bad_files_are_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_config(Outer, path)
    assert str(caught.value).startswith(f"{path}: {message}") and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "message"),
    [("items.3.steps", "--set items.3.steps: items has no item 3"),
     ("inner.steps.x", "--set inner.steps.x: inner.steps is not a section")],
)
def test_bad_overrides_are_one_line(key, message):
    with pytest.raises(UserError, match=message):
        load_config(Outer, {"inner": {"steps": 1}, "items": []}, {key: 1})


def test_missing_files_and_key_value_items(tmp_path):
    with pytest.raises(UserError, match="nope.yaml: config file not found"):
        read_mapping(tmp_path / "nope.yaml")
    assert parse_key_value("a=b=c", "--env") == ("a", "b=c")
    for bad in ("novalue", "=x"):
        with pytest.raises(UserError, match=f"--env '{bad}': expected KEY=VALUE"):
            parse_key_value(bad, "--env")


# --------------------------------------------------------------------------- storage options
def test_one_storage_option_rule_for_flags_and_configs():
    flags = parse_storage_options(["endpoint_url=http://h:9", "region_name=eu-west-1", "anon=false", "key=k"])
    assert flags == {"client_kwargs": {"endpoint_url": "http://h:9", "region_name": "eu-west-1"}, "anon": False, "key": "k"}
    config = normalize_options({"endpoint_url": "http://h:9", "client_kwargs": {"region_name": "eu-west-1"}})
    assert config == {"client_kwargs": {"endpoint_url": "http://h:9", "region_name": "eu-west-1"}}
    assert normalize_options(flags) == flags  # applying the rule twice changes nothing


def test_credentials_are_split_redacted_and_masked_on_command_lines():
    options = {"key": "K", "secret": "S", "token": "T", "client_kwargs": {"endpoint_url": "e"}}
    public, secret = split_secrets(options)
    assert public == {"client_kwargs": {"endpoint_url": "e"}} and secret == {"key": "K", "secret": "S", "token": "T"}
    assert redact(options) == {"key": REDACTED, "secret": REDACTED, "token": REDACTED, "client_kwargs": {"endpoint_url": "e"}}
    argv = ["lavie", "train", "c.yaml", "--set", "run.storage_options.secret=S", "--storage-option=key=K",
            "--storage-option", "endpoint_url=http://e", "--env", "HF_TOKEN=T", "--set", "run.name=x"]  # fmt: skip
    assert redact_command_line(argv) == [
        "lavie", "train", "c.yaml", "--set", "run.storage_options.secret=***", "--storage-option=key=***",
        "--storage-option", "endpoint_url=http://e", "--env", "HF_TOKEN=***", "--set", "run.name=x",
    ]  # fmt: skip


def test_local_and_remote_urls_and_unknown_schemes(tmp_path):
    assert is_local(str(tmp_path)) and is_local(f"file://{tmp_path}") and not is_local("s3://b/k")
    fs, path = filesystem(f"file://{tmp_path}/x")
    assert path == f"{tmp_path}/x" and fs.exists(str(tmp_path))
    with pytest.raises(UserError, match="gopher://host/x: unknown URL scheme 'gopher://'"):
        filesystem("gopher://host/x")


# --------------------------------------------------------------------------- atomic writes
def test_readers_never_see_a_partial_file(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if target.exists():
                seen.add(len(target.read_bytes()))

    reader = threading.Thread(target=read)
    reader.start()
    for size in (1 << 20, 2 << 20, 1 << 20, 3 << 20):
        atomic_write(str(target), b"x" * size)
    stop.set()
    reader.join()
    assert seen <= {1 << 20, 2 << 20, 3 << 20}  # whole files only
    assert [p.name for p in target.parent.iterdir()] == ["data.bin"]  # no temporary file left


def test_replace_folder_puts_a_new_folder_in_place(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.txt").write_text("new")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("old")
    replace_folder(tmp_path / "new", str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out"]


# --------------------------------------------------------------------------- the manifest contract
def test_the_success_rule_and_the_kinds(tmp_path):
    rows = [clip_row("/v.mp4", 0, 16, 24.0, 64, 48, "a clip of a car")]
    finished = open_manifest(str(write_clip_manifest(tmp_path / "out", rows)))
    assert (finished.layout, finished.finished, finished.kind) == ("curation_output", True, "clips")
    finished.require_finished()
    (tmp_path / "out" / SUCCESS_FILE).unlink()
    unfinished = open_manifest(str(tmp_path / "out"))
    assert unfinished.finished is False
    with pytest.raises(UserError, match=r"out: no _SUCCESS marker \(an unfinished or failed curation run\)"):
        unfinished.require_finished()
    plain = open_manifest(str(tmp_path / "out" / CLIPS_DIR))  # a Parquet folder made elsewhere
    assert (plain.layout, plain.finished, plain.kind) == ("parquet_dataset", None, "clips")
    plain.require_finished()  # no marker to ask for
    (tmp_path / "images").mkdir()
    pq.write_table(pa.table({"uri": ["/i.png"], "caption": ["x"]}), tmp_path / "images" / "p.parquet")
    assert open_manifest(str(tmp_path / "images")).kind == "images"
    with pytest.raises(UserError, match="not a manifest: missing column\\(s\\) width, height"):
        open_manifest(str(tmp_path / "images")).require_columns(["uri", "width", "height"])
    (tmp_path / "bad" / CLIPS_DIR).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([], schema=CLIP_SCHEMA), tmp_path / "bad" / CLIPS_DIR / "p.parquet")
    (tmp_path / "bad" / "run.json").write_text("{")
    with pytest.raises(UserError, match="bad/run.json: not valid JSON"):
        open_manifest(str(tmp_path / "bad"))


@pytest.mark.parametrize(("height", "width"), [(32, 48), (64, 48), (36, 52)])
def test_frames_decord_opens_but_cannot_copy_come_from_pyav(tmp_path, height, width):
    """decord 0.6 opens H.264 files 48 pixels wide but fails to copy their frames out (it pads the
    row to 64): the reader then reads the same decode-order frames through PyAV."""
    import numpy as np

    from lavie.core.video import open_video, write_video

    frames = np.stack([np.full((height, width, 3), 40 * i, np.uint8) for i in range(5)])
    path = write_video(tmp_path / "v.mp4", frames, 8, crf=0)
    with open_video(str(path)) as reader:
        got = reader.read(range(5))
        again = reader.read([4, 0])
    assert got.shape == (5, height, width, 3)
    assert np.abs(got.astype(int) - frames).max() <= 3
    assert np.array_equal(again, got[[4, 0]])
