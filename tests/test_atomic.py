import os

import pytest

from engine.atomic import replacing, temp_beside, write_atomically


def test_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.toml"
    write_atomically(path, "one")
    write_atomically(path, b"two", mode=0o600)
    assert path.read_text() == "two"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.toml"]


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "take.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["take.json"]


def test_a_writer_that_writes_nothing_is_an_error_not_an_empty_file(tmp_path):
    path = tmp_path / "out.csv"
    with pytest.raises(FileNotFoundError, match="out.csv"):
        with replacing(path):
            pass
    assert not path.exists()


def test_the_temp_name_keeps_the_suffix_for_writers_that_choose_a_format_by_it(tmp_path):
    tmp = temp_beside(tmp_path / "show.wav")
    assert tmp.suffix == ".wav" and tmp.parent == tmp_path and tmp.name.startswith(".show.wav.")
    assert temp_beside(tmp_path / "show.wav") != tmp


def test_a_folder_is_written_in_place_whole_and_a_failing_one_leaves_nothing(tmp_path):
    # train_mini writes whole diffusers folders through replacing(); fsync must take a folder
    out = tmp_path / "mini"
    with replacing(out) as tmp:
        (tmp / "unet").mkdir(parents=True)
        (tmp / "unet" / "config.json").write_text("{}")
    assert (out / "unet" / "config.json").read_text() == "{}"
    with pytest.raises(RuntimeError, match="killed"):
        with replacing(tmp_path / "other") as tmp:
            (tmp / "vae").mkdir(parents=True)
            (tmp / "vae" / "half.safetensors").write_bytes(b"x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]


def test_a_folder_replaces_a_folder_of_files_and_a_failed_one_keeps_the_old(tmp_path):
    out = tmp_path / "mini"
    (out / "unet").mkdir(parents=True)
    (out / "unet" / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with replacing(out) as tmp:
            (tmp / "unet").mkdir(parents=True)
            raise RuntimeError("export failed")
    assert (out / "unet" / "weights").read_text() == "old"  # before the fix the caller deleted it first
    with replacing(out) as tmp:
        (tmp / "unet").mkdir(parents=True)
        (tmp / "unet" / "weights").write_text("new")
    assert (out / "unet" / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]
