"""What the run log says: the logged loss is the mean over its logging window."""

from __future__ import annotations

import subprocess

import numpy as np
from conftest import ROOT, TOTAL_STEPS, logged_losses, train_command


def test_logged_loss_is_the_mean_of_the_window(tmp_path, straight_run, tiny_bert_dir, data_dir):
    """The reference run logs every step; the same run logging every 5 steps logs, at step 5k, the mean
    of steps 5k-4..5k, and at the last step the mean of the steps since the previous log line."""
    out = tmp_path / "every5"
    cmd = train_command(tiny_bert_dir, data_dir, out)
    cmd[cmd.index("--logging_steps") + 1] = "5"
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    every_step, every5 = logged_losses(straight_run), logged_losses(out)
    assert sorted(every5) == [5, 10, 15, 20, TOTAL_STEPS]
    for end, start in zip(sorted(every5), [0, 5, 10, 15, 20]):
        window = [every_step[s] for s in range(start + 1, end + 1)]
        assert abs(every5[end] - np.mean(window)) < 1e-6, (end, every5[end], window)
        assert every5[end] != every_step[end]  # not the window's last step
