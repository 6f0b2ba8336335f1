"""Run lifecycle on a tiny model: kill -9 and resume, Ctrl-C, plots, evaluation during training, trackers
and the clear errors a user meets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, build_tiny_model, run_train_grpo, tiny_cli_args
from plot_run import main as plot_main


def tiny_args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return tiny_cli_args(
        model_dir, out, "--seed", "7", *extra, rewards=("recorder.record_reward",), completion_length=16
    )


def cli_env(record_file: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "PYTHONUNBUFFERED": "1"}
    if record_file:
        env["GRPO_RECORD_FILE"] = str(record_file)
    return env


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train_grpo.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_train_grpo(args, cwd, env)


def wait_for(predicate, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"the run ended early:\n{process.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def steps_seen(record_file: Path) -> dict[int, list[str]]:
    """Prompts per step; a step redone after a crash keeps its last record."""
    seen = {}
    for line in record_file.read_text().splitlines():
        entry = json.loads(line)
        seen[entry["step"]] = entry["prompts"]
    return seen


def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    steps = ["--max-steps", "6", "--config", str(write(tmp_path / "save.json", {"save_steps": 1}))]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert run(tiny_args(tiny_model_dir, straight, *steps), tmp_path, cli_env(tmp_path / "a.jsonl")).returncode == 0

    process = start(tiny_args(tiny_model_dir, crashed, *steps), tmp_path, cli_env(tmp_path / "b.jsonl"))
    wait_for(lambda: (crashed / "checkpoint-2" / "trainer_state.json").is_file(), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (crashed / "checkpoint-6").exists(), "the run finished before it was killed"

    resumed = run(
        tiny_args(tiny_model_dir, crashed, *steps, "--resume-from-checkpoint", "latest"),
        tmp_path,
        cli_env(tmp_path / "b.jsonl"),
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    final = [json.loads((d / "checkpoint-6" / "trainer_state.json").read_text()) for d in (straight, crashed)]
    assert final[0]["global_step"] == final[1]["global_step"] == 6
    assert steps_seen(tmp_path / "a.jsonl") == steps_seen(tmp_path / "b.jsonl")  # same data, same order
    assert sorted(p.name for p in (straight / "checkpoint-6").iterdir()) == sorted(
        p.name for p in (crashed / "checkpoint-6").iterdir()
    )
    weights = [load_file(d / "adapter_model.safetensors") for d in (straight, crashed)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name  # CPU runs are bitwise reproducible


def start_long_run(model_dir: Path, out: Path, cwd: Path) -> tuple[subprocess.Popen, Path]:
    """A 500-step run, returned once its first step is logged, with its log file."""
    process = start(tiny_args(model_dir, out, "--max-steps", "500"), cwd, cli_env())
    log = out / "grpo_training.log"
    wait_for(lambda: log.is_file() and "step 1/500" in log.read_text(), process)
    return process, log


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    process, log = start_long_run(tiny_model_dir, out, tmp_path)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output[-3000:]
    checkpoints = list(out.glob("checkpoint-*/trainer_state.json"))
    assert checkpoints, "no checkpoint was saved on Ctrl-C"
    text = log.read_text()
    assert "SIGINT received" in text and "--resume-from-checkpoint latest" in text
    assert f"--output-dir {out}" in text


def test_second_ctrl_c_exits_at_once(tiny_model_dir, tmp_path):
    process, log = start_long_run(tiny_model_dir, tmp_path / "run", tmp_path)
    process.send_signal(signal.SIGINT)
    wait_for(lambda: "SIGINT received" in log.read_text(), process)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)
    assert process.returncode == 130


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_plot_eval_during_training_and_tensorboard(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(
        tiny_model_dir,
        out,
        "--max-steps",
        "4",
        "--eval-samples",
        "8",
        "--eval-steps",
        "2",
        "--report-to",
        "tensorboard",
    )
    result = run(args, tmp_path, cli_env())
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_reward" in m for m in metrics) and any("reward" in m for m in metrics)
    assert (out / "training_curves.png").stat().st_size > 10_000
    assert list(out.rglob("events.out.tfevents.*")), "no TensorBoard event file"
    (out / "training_curves.png").unlink()
    assert plot_main([str(out)]) == 0 and (out / "training_curves.png").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "nobody/no-such-model"], "could not be loaded"),  # hub id, offline, not cached
        (["--model", "./missing-folder"], "does not exist"),
        (["--backend", "unsloth"], "needs a CUDA GPU"),
        (["--resume-from-checkpoint", "nowhere/checkpoint-3"], "not a complete checkpoint folder"),
        (["--num-generations", "3"], "Working values"),
    ],
)
def test_clear_errors(tiny_model_dir, tmp_path, extra, message):
    out = tmp_path / "run"
    args = [a for a in tiny_args(tiny_model_dir, out, "--max-steps", "1")]
    if "--model" in extra:
        args[1] = extra[1]
        extra = []
    result = run([*args, *extra], tmp_path, cli_env())
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in (tmp_path / "grpo_training.log").read_text().splitlines() if "ERROR" in line]
    assert errors and message in errors[-1]
    assert "Traceback" not in result.stderr


def test_resume_from_another_model_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    config = write(tmp_path / "save.json", {"save_steps": 1})
    assert (
        run(tiny_args(tiny_model_dir, out, "--max-steps", "1", "--config", str(config)), tmp_path, cli_env()).returncode
        == 0
    )
    other = build_tiny_model(tmp_path / "other-model")
    result = run(tiny_args(other, out, "--max-steps", "2", "--resume-from-checkpoint", "latest"), tmp_path, cli_env())
    assert result.returncode == 2
    assert "was trained on" in (out / "grpo_training.log").read_text()
