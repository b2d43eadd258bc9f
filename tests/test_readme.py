"""README's first lines and its API example stay true."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2 and first_block[0].endswith("run_qa.py") and "pytest" in first_block[1]
    assert first_block[1] in (ROOT / ".ci/run").read_text()


def test_readme_api_example_runs():
    code = re.search(r"## Programmatic use\n\n```python\n(.*?)```", README, re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loss = float(re.search(r"loss after 10 steps: ([\d.]+)", proc.stdout).group(1))
    assert 0 < loss < 6.0  # log(256) = 5.5 is chance level for a start/end over 256 positions
