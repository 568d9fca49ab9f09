"""Atomic outputs: nothing half-written is ever left under the final name."""
import pytest

from infbrush.io import atomic_path, append_jsonl, sha256_file, write_json


def test_atomic_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out" / "x.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.json"]


def test_atomic_directory_replaces_old(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "old").write_text("1")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["new"]


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "y.txt"):
            pass


def test_jsonl_and_hash(tmp_path):
    log = tmp_path / "m.jsonl"
    append_jsonl(log, {"step": 1})
    append_jsonl(log, {"step": 2})
    assert log.read_text().count("\n") == 2
    assert len(sha256_file(log)) == 64
