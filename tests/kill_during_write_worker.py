"""`run_qa.py` with its all-or-nothing writes into --output_dir counted; the K-th (argv[1]; 0: none) is cut
off half-way through by SIGKILL: half its bytes reach the temporary file, then the process dies. Prints the
writes made, as JSON, when not killed. Writes elsewhere (the compilation and feature caches, filled by the
first run only) are not counted, so every run of the same arguments counts the same writes."""

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from jaxqa import atomic, cli

KILL_AT, writes = int(sys.argv[1]), []
OUTPUT_DIR = Path(sys.argv[sys.argv.index("--output_dir") + 1]).resolve()
_file, _dir = atomic.replacing, atomic.replacing_dir


def _written(path: Path, tmp: Path) -> None:
    if not Path(path).resolve().is_relative_to(OUTPUT_DIR):
        return
    writes.append(str(path))
    if len(writes) == KILL_AT:
        victim = tmp if tmp.is_file() else max(tmp.iterdir(), key=lambda p: p.stat().st_size)
        os.truncate(victim, victim.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def replacing(path, **options):
    with _file(path, **options) as tmp:
        yield tmp
        _written(Path(path), tmp)


@contextlib.contextmanager
def replacing_dir(path):
    with _dir(path) as tmp:
        yield tmp
        _written(Path(path), tmp)


atomic.replacing, atomic.replacing_dir = replacing, replacing_dir
rc = cli.main(sys.argv[2:])
print(json.dumps({"writes": writes}))
sys.exit(rc)
