"""All-or-nothing writes: a run killed at any moment leaves each output whole or absent, never half.

A file is written under a hidden temporary name in its own directory (so the rename stays on one
filesystem), flushed to disk, and renamed over its final name (`os.replace` is atomic). A directory
(an exported model) is filled under a hidden temporary name and renamed into place whole. Leftovers of
a killed writer are hidden dot-files, removed by the next write of the same name, or by
`remove_own_temporaries` in a process about to exit at once.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import uuid
from pathlib import Path

_writing: set[Path] = set()  # this process's temporaries not yet renamed into place


def _temporary(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}")


def remove_own_temporaries() -> None:
    """Remove the temporaries this process is writing: for a process that exits at once, with no `finally`
    run (SIGTERM outside the train loop), so that it leaves nothing half-written behind."""
    for tmp in list(_writing):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def _clear_leftovers(path: Path) -> None:
    """Temporaries of `path` left by a writer that was killed (never a live one: one writer per output)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*-*.*"):
        if stale.suffix in (".tmp", ".old"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """On disk before the rename, or a power cut could leave a complete-looking empty file."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def replacing(path: str | Path, shared: bool = False):
    """Yield a temporary path to write; when the block ends without error it becomes `path`. `shared`: other
    processes may be writing the same `path` (a cache entry), so no temporary of it is taken for a leftover."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not shared:
        _clear_leftovers(path)
    tmp = _temporary(path, "tmp")
    _writing.add(tmp)
    try:
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        _writing.discard(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def replacing_dir(path: str | Path):
    """Yield an empty temporary directory to fill; when the block ends without error it takes the place
    of `path`. An existing `path` is swapped out whole when it is empty or looks like an earlier export
    (files only, among them config.json); any other directory (one the user named that holds other
    things) keeps its contents and gets the new files renamed into it one by one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    tmp = _temporary(path, "tmp")
    _writing.add(tmp)
    tmp.mkdir()
    try:
        yield tmp
        for new in tmp.rglob("*"):
            if new.is_file():
                _sync(new)
        existing = list(path.iterdir()) if path.is_dir() else []
        if existing and (any(p.is_dir() for p in existing) or not (path / "config.json").is_file()):
            for new in sorted(tmp.iterdir()):
                os.replace(new, path / new.name)
        elif path.exists():
            old = _temporary(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _writing.discard(tmp)
