from __future__ import annotations

import json
import os

import pytest

from studio.fileinfo import file_identity


def test_a_file_identity_is_json_ready_and_changes_with_the_contents(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(b"one")
    before = file_identity(path)
    assert json.loads(json.dumps(before)) == before
    assert before[0] == str(path.resolve()) and before[1] == 3
    path.write_bytes(b"longer")
    os.utime(path, ns=(before[2] + 1_000_000, before[2] + 1_000_000))
    assert file_identity(path) != before


def test_a_link_and_its_target_have_one_identity(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"weights")
    link = tmp_path / "alias.safetensors"
    link.symlink_to(target)
    assert file_identity(link) == file_identity(target)


def test_a_missing_file_has_no_identity(tmp_path):
    with pytest.raises(OSError):
        file_identity(tmp_path / "gone.png")
