"""The real --quick-test on the embedded SmolLM2-135M-Instruct, as a user runs it (slow tier)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_quick_test_on_the_embedded_model(tmp_path):
    out = tmp_path / "quick"
    result = subprocess.run(
        [sys.executable, str(ROOT / "train_grpo.py"), "--quick-test", "--output-dir", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "run_config.json").read_text())["model_name"] == "smollm2-135m"
    log = (out / "grpo_training.log").read_text()
    assert "steps: 8" in log and "mean reward: start" in log and "ERROR" not in log

    evaluation = subprocess.run(
        [sys.executable, str(ROOT / "train_grpo.py"), "--quick-test", "--output-dir", str(out), "--eval-only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_prompts"] == 16 and results["samples"]
