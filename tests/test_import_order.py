"""Unsloth is imported before transformers, TRL and PEFT on every entry path where it may be the backend.

A spy package named ``unsloth`` records which of those libraries were already imported when it was imported,
then ends the process; a ``sitecustomize`` makes torch report a CUDA GPU so that Unsloth may be the backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SPY = """
import json, os, sys
with open(os.environ["SPY_OUT"], "w") as out:
    json.dump(sorted(m for m in ("transformers", "trl", "peft") if m in sys.modules), out)
os._exit(0)
"""
FAKE_CUDA = "import torch\ntorch.cuda.is_available = lambda: True\n"

ENTRY_PATHS = {
    "cli": [str(ROOT / "train_grpo.py"), "--quick-test", "--reward-preview"],
    "cli --production": [str(ROOT / "train_grpo.py"), "--production", "--reward-preview"],
    "python api": ["-c", "from grpo_trainer import GRPOTrainer, GRPOConfig"],
    "seed config api": ["-c", "from config import create_default_config; create_default_config()"],
    "seed training api": [
        "-c",
        "from grpo_trainer import GRPOTrainer, GRPOConfig\nfrom data_loader import create_grpo_dataloader",
    ],
}


def run_with_spy(tmp_path, argv: list[str]) -> list[str] | None:
    spy_dir = tmp_path / "spy"
    (spy_dir / "unsloth").mkdir(parents=True)
    (spy_dir / "unsloth" / "__init__.py").write_text(SPY)
    (spy_dir / "sitecustomize.py").write_text(FAKE_CUDA)
    out = tmp_path / "imported_before_unsloth.json"
    env = {**os.environ, "PYTHONPATH": f"{spy_dir}{os.pathsep}{ROOT}", "SPY_OUT": str(out)}
    subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    return json.loads(out.read_text()) if out.exists() else None


@pytest.mark.parametrize("argv", ENTRY_PATHS.values(), ids=ENTRY_PATHS.keys())
def test_unsloth_comes_first(tmp_path, argv):
    assert run_with_spy(tmp_path, argv) == []


def test_transformers_backend_does_not_import_unsloth(tmp_path):
    argv = [str(ROOT / "train_grpo.py"), "--quick-test", "--reward-preview", "--backend", "transformers"]
    assert run_with_spy(tmp_path, argv) is None
