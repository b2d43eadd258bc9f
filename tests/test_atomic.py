"""All-or-nothing writes: a write that fails half-way leaves the previous file (or directory) as it was."""

from __future__ import annotations

import json

import pytest

from jaxqa import atomic


class Boom(Exception):
    pass


def _visible(directory):
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def test_a_failed_write_keeps_the_old_file_and_shows_no_partial_one(tmp_path):
    path = tmp_path / "predictions.json"
    atomic.write_json(path, {"q1": "old"})
    with pytest.raises(Boom), atomic.replacing(path) as tmp:
        tmp.write_text('{"q1": "ne')  # half of the new content, then the writer dies
        raise Boom
    assert json.loads(path.read_text()) == {"q1": "old"} and _visible(tmp_path) == ["predictions.json"]
    assert list(tmp_path.iterdir()) == [path]  # the temporary is gone too
    atomic.write_json(path, {"q1": "new"})
    assert json.loads(path.read_text()) == {"q1": "new"}


def test_leftovers_of_a_killed_writer_are_hidden_and_cleared(tmp_path):
    path = tmp_path / "eval_results.json"
    (tmp_path / ".eval_results.json.4242-0badc0de.tmp").write_text('{"f1": 1')  # what a SIGKILL leaves
    (tmp_path / ".model.4242-0badc0de.tmp").mkdir()
    atomic.write_json(path, {"f1": 1.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.4242-0badc0de.tmp", "eval_results.json"]
    with atomic.replacing_dir(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval_results.json", "model"]


def test_a_directory_is_replaced_whole_or_not_at_all(tmp_path):
    model = tmp_path / "model"
    with atomic.replacing_dir(model) as tmp:
        (tmp / "config.json").write_text("old")
        (tmp / "model.safetensors").write_text("old")
    with pytest.raises(Boom), atomic.replacing_dir(model) as tmp:
        (tmp / "config.json").write_text("new")
        raise Boom
    assert {p.name: p.read_text() for p in model.iterdir()} == {"config.json": "old", "model.safetensors": "old"}
    assert _visible(tmp_path) == ["model"] and len(list(tmp_path.iterdir())) == 1
    with atomic.replacing_dir(model) as tmp:
        (tmp / "config.json").write_text("new")
    assert {p.name: p.read_text() for p in model.iterdir()} == {"config.json": "new"}  # nothing stale is left


@pytest.mark.parametrize("other", ["notes.txt", "runs/"])
def test_a_directory_that_is_no_model_keeps_its_contents(tmp_path, other):
    target = tmp_path / "exports"
    target.mkdir()
    (target / other).mkdir() if other.endswith("/") else (target / other).write_text("mine")
    (target / "model.safetensors").write_text("old")
    with atomic.replacing_dir(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == sorted(["config.json", "model.safetensors", other.strip("/")])
    assert (target / "config.json").read_text() == "new"
