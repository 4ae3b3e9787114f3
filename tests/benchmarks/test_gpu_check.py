"""`make gpu-check`: without a GPU it says so in one line and fails; its steps are bounded in time."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.gpu_check import REPO, run_step


def test_without_a_gpu_it_says_so_in_one_line_and_fails():
    environment = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["gpu-check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing was run"]


def test_a_step_past_its_limit_is_stopped_with_status_124(capsys):
    status, output, seconds = run_step([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], 2.0, dict(os.environ))
    assert status == 124 and seconds < 20
    assert "started" in output and "stopped after 2 s" in output


def test_a_step_keeps_its_output_and_status():
    status, output, _ = run_step([sys.executable, "-c", "import sys; print('hello'); sys.exit(3)"], 60.0, dict(os.environ))
    assert status == 3 and output == "hello\n"
