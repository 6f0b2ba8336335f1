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

from checkpoints import resolve_checkpoint
from conftest import ROOT, run_train_grpo, tiny_cli_args
from plot_run import main as plot_main
from train_grpo import cli, resume_command


def tiny_args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return tiny_cli_args(
        model_dir, out, "--seed", "7", *extra, rewards=("recorder.record_reward",), completion_length=16
    )


def cli_env(record_file: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "PYTHONUNBUFFERED": "1"}
    if record_file:
        env["GRPO_RECORD_FILE"] = str(record_file)
    return env


def start(args: list[str], cwd: Path, env: dict[str, str], script: Path = ROOT / "train_grpo.py") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
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


SAVE_EVERY_STEP = {"save_steps": 1}


@pytest.fixture(scope="module")
def straight_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted 4-step run (checkpoint every step) and the prompts each step saw."""
    root = tmp_path_factory.mktemp("straight")
    steps = ["--max-steps", "4", "--config", str(write(root / "save.json", SAVE_EVERY_STEP))]
    result = run(tiny_args(tiny_model_dir, root / "run", *steps), root, cli_env(root / "seen.jsonl"))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", root / "seen.jsonl"


KILL_POINTS = {
    # name: (how the process is started, when it is killed, the checkpoint 'latest' must then pick)
    "after-checkpoint-2": ((), lambda run, flag: (run / "checkpoint-2" / "trainer_state.json").is_file(), None),
    "during-save-of-checkpoint-3": (
        ("checkpoint-save:3",),
        lambda run, flag: flag.is_file(),
        "checkpoint-2",
    ),
    "after-final-adapter-before-marked-finished": (("final-save",), lambda run, flag: flag.is_file(), "checkpoint-4"),
}


@pytest.mark.parametrize(
    "point",
    [
        pytest.param("after-checkpoint-2", marks=pytest.mark.slow),
        pytest.param("during-save-of-checkpoint-3", marks=pytest.mark.slow),
        pytest.param("after-final-adapter-before-marked-finished", marks=pytest.mark.slow),
    ],
)
def test_kill_9_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path, straight_run, point):
    """kill -9 at several points, a checkpoint save included; ``latest`` then resumes to the same adapter."""
    pause, killed_when, expected_latest = KILL_POINTS[point]
    straight, straight_seen = straight_run
    crashed, flag = tmp_path / "crashed", tmp_path / "paused"
    steps = ["--max-steps", "4", "--config", str(write(tmp_path / "save.json", SAVE_EVERY_STEP))]
    env = {**cli_env(tmp_path / "seen.jsonl"), "GRPO_PAUSE_FLAG": str(flag)}
    if pause:
        env["GRPO_PAUSE"] = pause[0]
    script = ROOT / "tests" / "pause_points.py" if pause else ROOT / "train_grpo.py"
    process = start(tiny_args(tiny_model_dir, crashed, *steps), tmp_path, env, script)
    wait_for(lambda: killed_when(crashed, flag), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((crashed / "run_state.json").read_text())["state"] == "running"  # what a kill leaves
    if point == "after-checkpoint-2":
        assert not (crashed / "checkpoint-4").exists(), "the run finished before it was killed"
    if point == "during-save-of-checkpoint-3":
        assert (crashed / ".checkpoint-staging" / "checkpoint-3").is_dir() and not (crashed / "checkpoint-3").exists()
    if expected_latest:
        assert resolve_checkpoint("latest", crashed) == str(crashed / expected_latest)

    resumed = run(tiny_args(tiny_model_dir, crashed, *steps, "--resume-from-checkpoint", "latest"), tmp_path, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from " in (crashed / "grpo_training.log").read_text()  # the log names the checkpoint
    assert json.loads((crashed / "run_state.json").read_text())["state"] == "finished"
    assert not (crashed / ".checkpoint-staging").exists()
    logged = [[json.loads(line)["step"] for line in (d / "metrics.jsonl").open()] for d in (straight, crashed)]
    assert logged[0] == logged[1]  # one trajectory: what the killed run logged after its checkpoint is dropped
    final = [json.loads((d / "checkpoint-4" / "trainer_state.json").read_text()) for d in (straight, crashed)]
    assert final[0]["global_step"] == final[1]["global_step"] == 4
    assert steps_seen(straight_seen) == steps_seen(tmp_path / "seen.jsonl")  # same data, same order
    assert sorted(p.name for p in (straight / "checkpoint-4").iterdir()) == sorted(
        p.name for p in (crashed / "checkpoint-4").iterdir()
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


@pytest.mark.slow  # a minute of training on 2 cores; the fast tier keeps test_second_ctrl_c_exits_at_once
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


@pytest.mark.parametrize(
    ("processes", "start"),
    [(1, "python train_grpo.py "), (4, "<the same launcher and options as this run (4 processes)> train_grpo.py ")],
)
def test_the_resume_command_keeps_the_flags_and_names_the_launch(monkeypatch, processes, start):
    """Under a launcher, plain `python` would resume on one process; the launcher's own options are not known."""
    monkeypatch.setattr(
        sys, "argv", ["train_grpo.py", "--preset", "quick_test", "--output-dir", "old", "--max-steps", "9"]
    )
    command = resume_command(Path("runs/a"), processes)
    assert command == f"{start}--preset quick_test --max-steps 9 --output-dir runs/a --resume-from-checkpoint latest"


def test_second_ctrl_c_exits_at_once(tiny_model_dir, tmp_path):
    process, log = start_long_run(tiny_model_dir, tmp_path / "run", tmp_path)
    process.send_signal(signal.SIGINT)
    wait_for(lambda: "SIGINT received" in log.read_text(), process)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)
    assert process.returncode == 130


def test_sigusr1_prints_where_each_thread_is_and_the_run_goes_on(tiny_model_dir, tmp_path):
    """A run that seems stuck (a collective waiting on another process) says where it is on `kill -USR1 PID`."""
    process, log = start_long_run(tiny_model_dir, tmp_path / "run", tmp_path)
    process.send_signal(signal.SIGUSR1)
    time.sleep(1)
    process.send_signal(signal.SIGINT)  # still running: it saves and stops as usual
    wait_for(lambda: "SIGINT received" in log.read_text(), process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert "most recent call first" in output and "train_grpo.py" in output, output[-3000:]


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow  # over a minute of training with evaluation on 2 cores
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


@pytest.mark.slow  # the same rules without a model, one test each: tests/test_run_dir.py
def test_the_issue_data_loss_sequence_is_refused_and_leaves_runs_intact(tiny_model_dir, tmp_path, monkeypatch):
    """Issue 14's three data losses, on real runs: another run's checkpoint resumed into a finished run,
    --overwrite mixing old checkpoints into the new run, and resuming a finished run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    save = ["--config", str(write(tmp_path / "save.json", SAVE_EVERY_STEP))]
    finished, other = tmp_path / "finished", tmp_path / "other"
    assert cli(tiny_args(tiny_model_dir, finished, "--max-steps", "2", *save)) == 0
    assert cli(tiny_args(tiny_model_dir, other, "--max-steps", "3", *save)) == 0
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}

    foreign = ["--resume-from-checkpoint", str(other / "checkpoint-2")]
    assert cli(tiny_args(tiny_model_dir, finished, "--max-steps", "3", *foreign)) == 2
    assert cli(tiny_args(tiny_model_dir, finished, "--max-steps", "4", "--resume-from-checkpoint", "latest")) == 2
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before

    assert cli(tiny_args(tiny_model_dir, finished, "--max-steps", "1", "--overwrite", *save)) == 0
    (moved,) = tmp_path.glob("finished.old-*")
    assert {p: p.read_bytes() for p in moved.rglob("*") if p.is_file()} == {
        moved / p.relative_to(finished): data for p, data in before.items()
    }
    assert sorted(p.name for p in finished.glob("checkpoint-*")) == ["checkpoint-1"]  # nothing of the old run
    assert {json.loads(line)["step"] for line in (finished / "metrics.jsonl").read_text().splitlines()} == {1}
    assert cli(tiny_args(tiny_model_dir, finished, "--max-steps", "4", "--resume-from-checkpoint", "latest")) == 2


def test_a_resume_with_other_data_rewards_or_learning_rate_says_so(tmp_path, caplog, monkeypatch):
    """Found by a fault hunt: a resume took another dataset, reward and learning rate without a word, and its
    metrics continued the run's as one."""
    import logging

    from config import build_config, save_config_to_file
    from train_grpo import warn_about_changed_settings

    saved = tmp_path / "run_config.json"
    before = {"output_dir": str(tmp_path), "dataset_name": "a.jsonl", "learning_rate": 1e-5, "max_steps": 10}
    save_config_to_file(build_config(overrides=before), saved)
    after = {
        **before,
        "dataset_name": "b.jsonl",
        "learning_rate": 3e-5,
        "max_steps": 20,
        "reward_functions": ["length"],
    }
    with caplog.at_level(logging.WARNING):
        warn_about_changed_settings(saved, build_config(overrides=after))
    said = caplog.text
    assert "dataset_name 'a.jsonl' -> 'b.jsonl'" in said and "learning_rate 1e-05 -> 3e-05" in said
    assert "reward_functions" in said and "max_steps" not in said  # a longer run is what resuming is for
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_about_changed_settings(saved, build_config(overrides={**before, "max_steps": 20}))
    assert "differ" not in caplog.text
    # the run's record names local files absolutely; the same file given relatively is not a change
    (tmp_path / "data.jsonl").write_text("{}")
    monkeypatch.chdir(tmp_path)
    save_config_to_file(build_config(overrides={**before, "dataset_name": "data.jsonl"}), saved, absolute_paths=True)
    assert json.loads(saved.read_text())["dataset_name"] == str(tmp_path / "data.jsonl")
    with caplog.at_level(logging.WARNING):
        warn_about_changed_settings(saved, build_config(overrides={**before, "dataset_name": "data.jsonl"}))
    assert "differ" not in caplog.text


def test_a_resume_drops_the_metrics_logged_after_its_checkpoint(tmp_path):
    """Found by a fault hunt: kill -9 after step 3, resume from checkpoint-2: metrics.jsonl held steps 1, 2, 3, 3, 4;
    and a line cut by the kill had the next entry glued onto it."""
    from callbacks import MetricsLogger

    lines = [json.dumps({"step": step, "reward": 0.1 * step}) for step in (1, 2, 3)] + ['{"step": 4, "rew']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    MetricsLogger(tmp_path).continue_from(2)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines[:2]
