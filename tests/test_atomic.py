import json
import os

import pytest

from litevsr.atomic import atomic_path, write_json_atomic


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_text("old")
    with atomic_path(target, suffix=".mp4") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".partial.mp4") and not os.path.exists(tmp)
        with open(tmp, "w") as f:
            f.write("new")
        assert target.read_text() == "old"  # not before the block ends
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["clip.mp4"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_failure_leaves_the_old_file_intact_and_no_temporary(tmp_path, error):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise error()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["manifest.json"]


def test_a_failure_before_the_file_is_made_and_without_an_old_file(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.json"):
            raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_concurrent_writers_get_their_own_temporary(tmp_path):
    with atomic_path(tmp_path / "a") as first, atomic_path(tmp_path / "a") as second:
        assert first != second
        for tmp, text in ((first, "1"), (second, "2")):
            with open(tmp, "w") as f:
                f.write(text)
    assert (tmp_path / "a").read_text() == "1"  # the outer block ends last
    assert os.listdir(tmp_path) == ["a"]


def test_write_json_atomic(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"clips": 3})
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "m.json", {"clips": object()})  # not JSON: the old file stays
    assert json.loads((tmp_path / "m.json").read_text()) == {"clips": 3} and os.listdir(tmp_path) == ["m.json"]


def _folder(path, text):
    os.makedirs(path)
    with open(os.path.join(path, "weights"), "w") as f:
        f.write(text)


@pytest.mark.parametrize("old", ["folder", "file", None])
def test_a_folder_replaces_a_folder_or_a_file(tmp_path, old):
    target = tmp_path / "adapter"
    if old == "folder":
        _folder(target, "old")
    elif old == "file":
        target.write_text("old")
    with atomic_path(target) as tmp:
        _folder(tmp, "new")
    assert (target / "weights").read_text() == "new" and os.listdir(tmp_path) == ["adapter"]


def test_a_failed_folder_leaves_the_old_folder_and_no_temporary(tmp_path):
    target = tmp_path / "adapter"
    _folder(target, "old")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            _folder(tmp, "half")
            raise ValueError
    assert (target / "weights").read_text() == "old" and os.listdir(tmp_path) == ["adapter"]


def test_a_file_replaces_a_folder(tmp_path):
    target = tmp_path / "out"
    _folder(target, "old frames")
    with atomic_path(target) as tmp, open(tmp, "w") as f:
        f.write("video")
    assert target.read_text() == "video" and os.listdir(tmp_path) == ["out"]
