"""Run-directory rules and checkpoints without a model: the state machine, what each decision leaves on disk,
checkpoint verification and atomic publishing, the zero-step check, the resume schedule check, and what the
terminal and the log files receive."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from callbacks import CompletionsEveryN, ResumeCheck, summary_line
from checkpoints import (
    STAGING_DIR,
    CheckpointError,
    check_adapter_matches,
    checkpoint_problem,
    completes_its_run,
    publish,
    resolve_checkpoint,
)
from config import ConfigError
from models import ModelError
from run_utils import (
    EVALUATE,
    FILE_ONLY,
    FINISHED,
    FOREIGN,
    INTERRUPTED,
    NEW,
    REPLACE,
    RESUME,
    RUN_STATE_FILE,
    RUNNING,
    START,
    RunDirError,
    StdoutToLog,
    TerminalHandler,
    check_trains_a_step,
    close_run,
    decide_run_dir,
    environment_problem,
    mark_run,
    open_run_dir,
    report_crash,
    run_dir_state,
)


def make_checkpoint(run_dir: Path, step: int, max_steps: int = 8, rank: int = 4) -> Path:
    """A checkpoint folder with the files a resume needs (tiny adapter weights)."""
    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps}))
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "base_model_name_or_path": "base"}))
    save_file({"lora_A.weight": torch.full((rank, 3), float(step))}, folder / "adapter_model.safetensors")
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    return folder


def make_run(run_dir: Path, state: str | None, steps=(2, 4), max_steps: int = 8, pid: int | None = None) -> Path:
    """A run directory with checkpoints, metrics, a log and (unless ``state`` is None) a marker."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for step in steps:
        make_checkpoint(run_dir, step, max_steps)
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n')
    (run_dir / "grpo_training.log").write_text("old run\n")
    if state == FINISHED:
        save_file({"w": torch.ones(2)}, run_dir / "adapter_model.safetensors")
    if state is not None:
        marker = {"state": state, "pid": pid or os.getpid(), "host": os.uname().nodename}
        (run_dir / RUN_STATE_FILE).write_text(json.dumps(marker))
    return run_dir


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: the proof that a run was left intact."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def config(output_dir: Path, resume: str | None = None, overwrite: bool = False) -> SimpleNamespace:
    return SimpleNamespace(output_dir=str(output_dir), resume_from_checkpoint=resume, overwrite_output_dir=overwrite)


@pytest.fixture()
def live_pid():
    """A process of this host that is alive for the test (a run in progress elsewhere)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


# ---- states --------------------------------------------------------------------------------------------------
def test_states(tmp_path, live_pid):
    assert run_dir_state(tmp_path / "missing") == NEW
    (tmp_path / "empty").mkdir()
    assert run_dir_state(tmp_path / "empty") == NEW
    assert run_dir_state(make_run(tmp_path / "finished", FINISHED)) == FINISHED
    assert run_dir_state(make_run(tmp_path / "stopped", INTERRUPTED)) == INTERRUPTED
    assert run_dir_state(make_run(tmp_path / "live", RUNNING, pid=live_pid)) == RUNNING
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert run_dir_state(make_run(tmp_path / "killed", RUNNING, pid=int(dead.stdout))) == INTERRUPTED
    assert run_dir_state(make_run(tmp_path / "own-stale", RUNNING)) == INTERRUPTED  # this process is not training
    assert run_dir_state(make_run(tmp_path / "old-version", None)) == INTERRUPTED  # checkpoints, no marker
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert run_dir_state(tmp_path / "other") == FOREIGN


def test_deciding_writes_nothing(tmp_path, live_pid):
    """``decide_run_dir`` only reads: every decision and every refusal leaves the tree as it was."""
    make_run(tmp_path / "finished", FINISHED)
    make_run(tmp_path / "stopped", INTERRUPTED)
    make_run(tmp_path / "live", RUNNING, pid=live_pid)
    before = snapshot(tmp_path)
    cases = [
        (config(tmp_path / "new"), True),
        (config(tmp_path / "finished"), True),
        (config(tmp_path / "finished"), False),
        (config(tmp_path / "finished", overwrite=True), True),
        (config(tmp_path / "stopped", "latest"), True),
        (config(tmp_path / "finished", "latest"), True),
        (config(tmp_path / "live"), True),
        (config(tmp_path / "finished", str(tmp_path / "stopped" / "checkpoint-4")), True),
    ]
    for case, explicit in cases:
        with contextlib.suppress(RunDirError, CheckpointError):
            decide_run_dir(case, explicit=explicit)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "new").exists() and not (tmp_path / "finished-2").exists()


# ---- one test per rule, each proving the old run's files are intact --------------------------------------------
def test_finished_run_is_not_modified_without_overwrite(tmp_path):
    run = make_run(tmp_path / "run", FINISHED)
    before = snapshot(run)
    with pytest.raises(RunDirError, match=r"holds a finished run.*--overwrite"):
        decide_run_dir(config(run), explicit=True)
    plan = decide_run_dir(config(run), explicit=False)  # the default output dir moves on
    assert plan == decide_run_dir(config(run), explicit=False) and plan.path == tmp_path / "run-2"
    open_run_dir(plan)
    assert snapshot(run) == before


def test_overwrite_moves_the_old_run_aside_completely(tmp_path):
    run = make_run(tmp_path / "run", FINISHED)
    before = snapshot(run)
    plan = decide_run_dir(config(run, overwrite=True), explicit=True)
    assert (plan.action, plan.found) == (REPLACE, FINISHED)
    open_run_dir(plan)
    (moved,) = tmp_path.glob("run.old-*")
    assert snapshot(moved) == before  # the old run, every byte, beside the new one
    assert sorted(p.name for p in run.iterdir()) == [RUN_STATE_FILE]  # nothing old mixes into the new run
    with pytest.raises(CheckpointError, match="latest"):
        decide_run_dir(config(run, "latest"), explicit=True)  # 'latest' cannot reach the old run's checkpoints


def test_a_checkpoint_resumes_only_into_its_own_run(tmp_path):
    other = make_run(tmp_path / "other", INTERRUPTED)
    finished = make_run(tmp_path / "finished", FINISHED)
    before = snapshot(tmp_path)
    checkpoint = str(other / "checkpoint-4")
    with pytest.raises(RunDirError) as refused:
        decide_run_dir(config(finished, checkpoint), explicit=True)
    message = str(refused.value)
    assert f"belongs to the run in {other.resolve()}" in message
    assert f"--output-dir {other.resolve()} --resume-from-checkpoint latest" in message  # continue its own run
    assert f"--output-dir <a new folder> --resume-from-checkpoint {checkpoint}" in message  # or start a new one
    fork = decide_run_dir(config(tmp_path / "fork", checkpoint), explicit=True)
    assert (fork.action, fork.checkpoint) == (RESUME, checkpoint)
    own = decide_run_dir(config(tmp_path / "unused", checkpoint), explicit=False)  # no --output-dir: its own run
    assert (own.path, own.action) == (other, RESUME)
    assert snapshot(tmp_path) == before


def test_a_finished_run_is_not_resumed(tmp_path):
    run = make_run(tmp_path / "run", FINISHED, steps=(4, 8))
    before = snapshot(run)
    with pytest.raises(RunDirError, match=r"finished run \(step 8 of 8\).*learning rate 0.*--init-adapter"):
        decide_run_dir(config(run, "latest"), explicit=True)
    assert snapshot(run) == before


def test_overwrite_and_resume_of_the_same_run_are_refused(tmp_path):
    run = make_run(tmp_path / "run", INTERRUPTED)
    before = snapshot(run)
    with pytest.raises(RunDirError, match="pass only one of them"):
        decide_run_dir(config(run, "latest", overwrite=True), explicit=True)
    assert snapshot(run) == before


def test_a_running_run_is_left_alone_even_with_overwrite(tmp_path, live_pid):
    run = make_run(tmp_path / "run", RUNNING, pid=live_pid)
    before = snapshot(run)
    for case in (config(run), config(run, overwrite=True), config(run, "latest")):
        with pytest.raises(RunDirError, match=f"in use by a run in progress \\(process {live_pid}\\)"):
            decide_run_dir(case, explicit=True)
    # --eval-only too: its log lines and eval_results.json went into the live run (fault hunt)
    with pytest.raises(RunDirError, match="in use by a run in progress"):
        decide_run_dir(config(run), explicit=True, evaluating=True)
    assert snapshot(run) == before


def test_a_run_that_stopped_before_its_first_checkpoint_is_not_offered_a_resume(tmp_path):
    """Found by a fault hunt: the advice was --resume-from-checkpoint latest, which then found no checkpoint."""
    run = make_run(tmp_path / "run", INTERRUPTED, steps=())
    with pytest.raises(RunDirError, match="stopped before its first checkpoint") as err:
        decide_run_dir(config(run), explicit=True)
    assert "--resume-from-checkpoint" not in str(err.value) and "--overwrite" in str(err.value)


def test_an_interrupted_run_resumes_and_is_marked(tmp_path):
    run = make_run(tmp_path / "run", INTERRUPTED)
    (run / STAGING_DIR / "checkpoint-5").mkdir(parents=True)  # a save that a kill cut short
    with pytest.raises(RunDirError, match=r"interrupted run \(last checkpoint checkpoint-4\).*latest"):
        decide_run_dir(config(run), explicit=True)
    plan = decide_run_dir(config(run, "latest"), explicit=True)
    assert (plan.action, plan.checkpoint) == (RESUME, str(run / "checkpoint-4"))
    open_run_dir(plan)
    assert not (run / STAGING_DIR).exists()
    marker = json.loads((run / RUN_STATE_FILE).read_text())
    assert marker["state"] == RUNNING and marker["resumed_from"] == plan.checkpoint
    close_run(run, interrupted=False, steps=8)
    marker = json.loads((run / RUN_STATE_FILE).read_text())
    assert (marker["state"], marker["global_step"], marker["checkpoint"]) == (FINISHED, 8, "checkpoint-4")
    assert run_dir_state(run) == FINISHED


def test_evaluation_and_preview_never_move_or_mark_a_run(tmp_path):
    run = make_run(tmp_path / "run", FINISHED)
    before = snapshot(run)
    plan = decide_run_dir(config(run, overwrite=True), explicit=True, evaluating=True)
    assert plan.action == EVALUATE
    open_run_dir(plan)
    assert snapshot(run) == before
    assert decide_run_dir(config(tmp_path / "none"), explicit=True, previewing=True).action == EVALUATE


def test_of_two_runs_started_into_one_folder_only_the_first_takes_it(tmp_path):
    """Both checked the folder before loading their data and model (it was free); the second to open it is refused
    instead of writing its checkpoints and metrics between the first's (seen with two runs 1.5 s apart)."""
    run = tmp_path / "run"
    first = decide_run_dir(config(run), explicit=True)
    second = decide_run_dir(config(run), explicit=True)
    assert first.action == second.action == START
    open_run_dir(first)
    before = snapshot(run)
    with pytest.raises(RunDirError, match="is in use by a run in progress"):
        open_run_dir(second)
    assert snapshot(run) == before, "the first run's folder is left as it was"


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        decide_run_dir(config(tmp_path / "f"), explicit=True)


def test_marker_is_written_atomically(tmp_path):
    mark_run(tmp_path, RUNNING, note=1)
    assert [p.name for p in tmp_path.iterdir()] == [RUN_STATE_FILE]
    assert json.loads((tmp_path / RUN_STATE_FILE).read_text())["note"] == 1


# ---- checkpoints ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda c: (c / "trainer_state.json").unlink(), "missing trainer_state.json"),
        (lambda c: (c / "optimizer.pt").unlink(), "missing optimizer.pt"),
        (lambda c: (c / "adapter_model.safetensors").unlink(), "missing adapter_model.safetensors"),
        (lambda c: (c / "trainer_state.json").write_text("{not json"), "unreadable trainer_state.json"),
        (lambda c: (c / "trainer_state.json").write_text("{}"), "unreadable trainer_state.json"),
        (lambda c: (c / "adapter_config.json").write_text(""), "unreadable"),
        (lambda c: _truncate(c / "adapter_model.safetensors"), "does not load"),
        (lambda c: _truncate(c / "optimizer.pt"), "optimizer.pt is not a complete torch archive"),  # fault hunt
    ],
)
def test_latest_skips_a_damaged_checkpoint(tmp_path, caplog, damage, problem):
    make_checkpoint(tmp_path, 2)
    newest = make_checkpoint(tmp_path, 4)
    damage(newest)
    assert problem in checkpoint_problem(newest)
    with caplog.at_level(logging.WARNING):
        assert resolve_checkpoint("latest", tmp_path) == str(tmp_path / "checkpoint-2")
    assert f"skipping {newest}: " in caplog.text and problem in caplog.text
    with pytest.raises(CheckpointError, match="not a complete checkpoint folder"):
        resolve_checkpoint(str(newest), tmp_path)


@pytest.mark.parametrize(
    "optimizer_state",
    [lambda c: (c / "optimizer.bin").write_bytes(b"o"), lambda c: (c / "optimizer_0").mkdir()],
    ids=["fsdp-full-state", "fsdp-sharded-state"],
)
def test_an_fsdp_checkpoint_is_complete(tmp_path, optimizer_state):
    """Under FSDP accelerate writes the optimizer state as optimizer.bin (full) or an optimizer_0/ folder (sharded)."""
    checkpoint = make_checkpoint(tmp_path, 2)
    (checkpoint / "optimizer.pt").unlink()
    optimizer_state(checkpoint)
    assert checkpoint_problem(checkpoint) is None


def _fsdp_files(checkpoint: Path) -> None:
    (checkpoint / "optimizer.pt").unlink()
    (checkpoint / "pytorch_model_fsdp.bin").write_bytes(b"m")
    (checkpoint / "optimizer.bin").write_bytes(b"o")


def _deepspeed_files(checkpoint: Path) -> None:
    (checkpoint / "optimizer.pt").unlink()
    (checkpoint / "global_step2").mkdir()


@pytest.mark.parametrize(
    ("files", "launcher", "refused"),
    [
        (None, None, None),
        (_fsdp_files, "ACCELERATE_USE_FSDP", None),
        (_deepspeed_files, "ACCELERATE_USE_DEEPSPEED", None),
        # seen on CPU through the real CLI: plain python on an FSDP checkpoint failed after loading the model
        # ("only supported when using PyTorch FSDP"), FSDP on a plain one lacked optimizer.bin on one process
        (_fsdp_files, None, "written under FSDP"),
        (None, "ACCELERATE_USE_FSDP", "written under one process or DDP"),
        (_deepspeed_files, None, "written under DeepSpeed"),
        (_fsdp_files, "ACCELERATE_USE_DEEPSPEED", "launched as DeepSpeed"),
    ],
    ids=["plain", "fsdp", "deepspeed", "fsdp-by-plain", "plain-by-fsdp", "deepspeed-by-plain", "fsdp-by-deepspeed"],
)
def test_a_checkpoint_resumes_under_the_kind_of_launch_that_wrote_it(tmp_path, monkeypatch, files, launcher, refused):
    checkpoint = make_checkpoint(tmp_path, 2)
    if files:
        files(checkpoint)
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.setenv(name, "true" if name == launcher else "false")
    if refused is None:
        assert resolve_checkpoint("latest", tmp_path) == str(checkpoint)
        return
    for resume in ("latest", str(checkpoint)):
        with pytest.raises(CheckpointError, match=refused) as err:
            resolve_checkpoint(resume, tmp_path)
        assert f"--init-adapter {checkpoint} with another --output-dir" in str(err.value)


@pytest.mark.parametrize(
    ("rng_files", "processes", "said"), [(0, 1, None), (2, 2, None), (2, 1, "0.5 times"), (0, 4, "4 times")]
)
def test_a_resume_with_another_process_count_says_what_changes(
    tmp_path, monkeypatch, caplog, rng_files, processes, said
):
    """Seen on CPU: a 2-process DDP checkpoint resumed by plain python trains on, with half the global batch."""
    checkpoint = make_checkpoint(tmp_path, 2)
    for rank in range(rng_files):
        torch.save({"python": 0}, checkpoint / f"rng_state_{rank}.pth")
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    with caplog.at_level(logging.WARNING):
        assert resolve_checkpoint("latest", tmp_path) == str(checkpoint)
    assert ("written by" in caplog.text) is (said is not None)
    if said:
        assert f"{max(rng_files, 1)} process(es), this run has {processes}" in caplog.text and said in caplog.text


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def test_latest_without_a_good_checkpoint(tmp_path):
    (make_checkpoint(tmp_path, 3) / "optimizer.pt").unlink()
    (tmp_path / "checkpoint-x").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint-\\* folder"):
        resolve_checkpoint("latest", tmp_path)


def test_publish_renames_into_place_and_replaces_the_same_step(tmp_path):
    make_checkpoint(tmp_path, 3)
    staged = make_checkpoint(tmp_path / STAGING_DIR, 3, max_steps=12)
    final = publish(staged, tmp_path)
    assert final == tmp_path / "checkpoint-3" and not staged.exists()
    assert json.loads((final / "trainer_state.json").read_text())["max_steps"] == 12
    assert sorted(p.name for p in (tmp_path / STAGING_DIR).iterdir()) == []


def test_adapter_settings_must_match_on_resume(tmp_path):
    checkpoint = make_checkpoint(tmp_path, 2, rank=4)
    peft = SimpleNamespace(base_model_name_or_path="base", r=8, lora_alpha=None, target_modules=None)
    model = SimpleNamespace(peft_config={"default": peft})
    with pytest.raises(ModelError, match="r=4, but this run uses 8; resume with --lora-rank 4"):
        check_adapter_matches(checkpoint, model)
    peft.r, peft.base_model_name_or_path = 4, "another"
    with pytest.raises(ModelError, match="was trained on base"):
        check_adapter_matches(checkpoint, model)
    peft.base_model_name_or_path = "base"
    check_adapter_matches(checkpoint, model)


def test_the_same_model_folder_written_another_way_resumes(tmp_path, monkeypatch):
    """Found by a fault hunt: trained with --model ../model, resumed with its absolute path: refused."""
    (tmp_path / "model").mkdir()
    work = tmp_path / "work"
    checkpoint = make_checkpoint(work / "run", 2, rank=4)
    adapter = json.loads((checkpoint / "adapter_config.json").read_text())
    (checkpoint / "adapter_config.json").write_text(json.dumps({**adapter, "base_model_name_or_path": "../model"}))
    monkeypatch.chdir(work)
    peft = SimpleNamespace(base_model_name_or_path=str(tmp_path / "model"), r=4, lora_alpha=None, target_modules=None)
    check_adapter_matches(checkpoint, SimpleNamespace(peft_config={"default": peft}))
    peft.base_model_name_or_path = str(work)  # another folder that exists
    with pytest.raises(ModelError, match=r"was trained on \.\./model"):
        check_adapter_matches(checkpoint, SimpleNamespace(peft_config={"default": peft}))


def test_resume_past_the_end_of_the_schedule(tmp_path, caplog):
    args = SimpleNamespace(lr_scheduler_type="linear")
    ended = ResumeCheck(str(make_checkpoint(tmp_path / "a", 8, max_steps=8)))
    with pytest.raises(RunDirError, match=r"last step of a 8-step run.*learning-rate schedule has reached 0"):
        ended.on_train_begin(args, SimpleNamespace(max_steps=12), None)
    ended.on_train_begin(SimpleNamespace(lr_scheduler_type="constant"), SimpleNamespace(max_steps=12), None)
    ended.on_train_begin(args, SimpleNamespace(max_steps=8), None)  # same length: nothing left to train, fine
    midway = ResumeCheck(str(make_checkpoint(tmp_path / "b", 4, max_steps=8)))
    with caplog.at_level(logging.WARNING):
        midway.on_train_begin(args, SimpleNamespace(max_steps=12), None)
    assert "resuming a 8-step run as a 12-step run" in caplog.text


def test_a_checkpoint_at_the_end_of_its_run_leaves_nothing_to_train(tmp_path):
    last = make_checkpoint(tmp_path, 8, max_steps=8)
    assert completes_its_run(last, 8) and completes_its_run(last, -1)
    assert not completes_its_run(last, 12)  # a longer run: ResumeCheck decides
    assert not completes_its_run(make_checkpoint(tmp_path, 4, max_steps=8), 8)


# ---- zero steps ----------------------------------------------------------------------------------------------
def test_a_run_that_would_train_no_step_is_refused():
    settings = SimpleNamespace(
        num_generations=4, per_device_train_batch_size=16, gradient_accumulation_steps=2, steps_per_generation=None
    )
    with pytest.raises(ConfigError, match=r"has 3 prompts, but one step takes 8 .*--batch-size 12"):
        check_trains_a_step(3, settings, 1)
    check_trains_a_step(8, settings, 1)
    check_trains_a_step(None, settings, 1)  # a stream: unknown length


# ---- terminal and log files ----------------------------------------------------------------------------------
@pytest.fixture()
def terminal_and_file(tmp_path):
    """A logger wired like ``setup_logging``: the terminal handler and a log file."""
    terminal = TerminalHandler()
    terminal.stream = stream = _Lines()
    file_handler = logging.FileHandler(tmp_path / "grpo_training.log", encoding="utf-8")
    log = logging.getLogger("test_run_dir.terminal")
    log.propagate = False
    log.setLevel(logging.INFO)
    for handler in (terminal, file_handler):
        log.addHandler(handler)
    yield log, stream, tmp_path / "grpo_training.log"
    for handler in (terminal, file_handler):
        log.removeHandler(handler)
        handler.close()


class _Lines:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_terminal_shows_each_warning_once_and_no_traceback(terminal_and_file):
    log, terminal, log_file = terminal_and_file
    for _ in range(3):
        log.warning("Ignoring clean_up_tokenization_spaces")
    log.info("metrics {...}", extra={FILE_ONLY: True})
    try:
        raise ValueError("boom")
    except ValueError as err:
        log.error("failed: %s", err, exc_info=err)
    assert terminal.text.count("Ignoring clean_up_tokenization_spaces") == 1
    assert "metrics" not in terminal.text and "Traceback" not in terminal.text and "failed: boom" in terminal.text
    written = log_file.read_text()
    assert written.count("Ignoring clean_up_tokenization_spaces") == 3
    assert "metrics {...}" in written and "Traceback" in written and 'raise ValueError("boom")' in written


def test_a_crash_report_points_to_the_log_with_its_traceback(tmp_path, monkeypatch, capsys):
    from run_utils import setup_logging

    monkeypatch.chdir(tmp_path)
    setup_logging(None)
    try:
        {}["missing"]
    except KeyError as err:
        report_crash(err)
    terminal = capsys.readouterr().err
    assert terminal.count("\n") == 1 and "ERROR" in terminal
    assert f"the traceback is in {tmp_path / 'grpo_training.log'}" in terminal and "Traceback" not in terminal
    assert "Traceback" in (tmp_path / "grpo_training.log").read_text()


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied")],
)
def test_environment_errors_are_one_line(code, advice):
    message = environment_problem(OSError(code, os.strerror(code), "/runs/x/adapter_model.safetensors"))
    verb = "access" if code == errno.EACCES else "write"  # a permission error may be a read's
    assert message.startswith(f"cannot {verb} /runs/x/adapter_model.safetensors: ") and advice in message
    assert message.endswith("resumes with --resume-from-checkpoint latest.")
    assert environment_problem(OSError(errno.EBADF, "bad")) is None


def test_an_evaluation_stopped_by_the_machine_is_not_told_to_resume():
    message = environment_problem(OSError(errno.ENOSPC, "full", "/runs/x/eval_results.json"), training=False)
    assert (
        message
        == "cannot write /runs/x/eval_results.json: the disk is full; free some space or choose another --output-dir."
    )


def test_summary_line_names_the_numbers_a_person_watches():
    line = summary_line({"reward": 0.2203, "reward_std": 0.18, "loss": 0.3316, "learning_rate": 5e-05, "x": 1})
    assert line == "reward 0.2203  std 0.18  loss 0.3316  lr 5e-05"


def test_completions_table_on_the_terminal_at_step_1_and_every_n_steps_in_the_log_always(tmp_path, monkeypatch):
    terminal = _Lines()
    monkeypatch.setattr(sys, "stdout", StdoutToLog(terminal, tmp_path / "grpo_training.log"))
    every = CompletionsEveryN(10)
    for step in (1, 2, 10):
        every.on_step_begin(None, SimpleNamespace(global_step=step - 1), None)
        every.on_log(None, SimpleNamespace(global_step=step), None)
        print(f"table of step {step}")  # what TRL prints right after the log
    every.on_train_end(None, None, None)
    assert terminal.text == "table of step 1\ntable of step 10\n"
    assert (tmp_path / "grpo_training.log").read_text() == "table of step 1\ntable of step 2\ntable of step 10\n"


def test_a_library_basic_config_handler_does_not_print_every_line_twice(tmp_path, monkeypatch, capsys):
    """Unsloth calls logging.basicConfig at import (before our logging is set up): its root handler went."""
    import logging
    import sys

    from run_utils import setup_logging

    monkeypatch.chdir(tmp_path)
    stray = logging.StreamHandler(sys.stderr)
    stray.setFormatter(logging.Formatter("[%(name)s|%(levelname)s]%(message)s"))
    logging.getLogger().addHandler(stray)
    try:
        setup_logging(None)
        logging.getLogger("train_grpo").info("data: 3 training prompts")
    finally:
        logging.getLogger().removeHandler(stray)
    terminal = capsys.readouterr().err
    assert terminal.count("data: 3 training prompts") == 1 and "[train_grpo|INFO]" not in terminal


@pytest.mark.parametrize(
    ("saved_task", "resuming_with", "expected"),
    [
        ("SEQ_CLS", None, "is a reward model's checkpoint; continue that run with train_reward_model.py"),
        ("CAUSAL_LM", "SEQ_CLS", "is a GRPO policy's checkpoint; continue that run with train_grpo.py"),
    ],
)
def test_a_checkpoint_of_the_other_script_is_refused_before_anything_is_written(
    tmp_path, saved_task, resuming_with, expected
):
    """Found by a fault hunt: GRPO resumed a reward model's checkpoint (and the reverse), rewrote that run's
    run_config.json, then failed mid-load with a traceback."""
    run = make_run(tmp_path / "run", INTERRUPTED)
    for checkpoint in run.glob("checkpoint-*"):
        adapter = json.loads((checkpoint / "adapter_config.json").read_text())
        (checkpoint / "adapter_config.json").write_text(json.dumps({**adapter, "task_type": saved_task}))
    before = snapshot(run)
    settings = config(run, "latest")
    if resuming_with:
        settings.ADAPTER_TASK = resuming_with
    with pytest.raises(RunDirError, match=expected):
        decide_run_dir(settings, explicit=True)
    assert snapshot(run) == before


def test_a_run_on_another_host_counts_as_alive_while_it_logs(tmp_path):
    """Found by a fault hunt: on shared storage another host's marker was taken as dead, so --overwrite moved a live
    run's folder aside (its process kept writing into it by path)."""
    import time

    def remote(updated: float) -> Path:
        run = make_run(tmp_path / f"remote-{int(updated)}", RUNNING, pid=12345)
        marker = json.loads((run / RUN_STATE_FILE).read_text())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(updated))
        (run / RUN_STATE_FILE).write_text(json.dumps({**marker, "host": "node2", "updated": stamp}))
        return run

    live, gone = remote(time.time() - 60), remote(time.time() - 7200)
    assert (run_dir_state(live), run_dir_state(gone)) == (RUNNING, INTERRUPTED)
    with pytest.raises(RunDirError, match="process 12345 on node2, last heard from"):
        decide_run_dir(config(live, overwrite=True), explicit=True)


def test_a_recycled_pid_is_not_the_run(tmp_path, live_pid):
    """Found by a fault hunt: a marker whose pid now names another process (after a restart) locked the folder."""
    from run_utils import process_start

    run = make_run(tmp_path / "run", RUNNING, pid=live_pid)
    marker = json.loads((run / RUN_STATE_FILE).read_text())
    (run / RUN_STATE_FILE).write_text(json.dumps({**marker, "started": process_start(live_pid)}))
    assert run_dir_state(run) == RUNNING
    (run / RUN_STATE_FILE).write_text(json.dumps({**marker, "started": process_start(live_pid) - 1}))
    assert run_dir_state(run) == INTERRUPTED


def test_a_reward_model_folder_is_named_as_such(tmp_path):
    """Found by a fault hunt: --eval-only on a reward model's folder was a line about unknown keys in its
    run_config.json, and --init-adapter with it said to use the --model and --lora-rank it already had."""
    from config import ConfigError, GRPOConfig

    folder = tmp_path / "rm"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"task_type": "SEQ_CLS", "r": 4}))
    save_file({"w": torch.ones(2)}, folder / "adapter_model.safetensors")
    with pytest.raises(RunDirError, match=f"holds a reward model .*--reward-model {folder}"):
        decide_run_dir(config(folder), explicit=True, evaluating=True)
    with pytest.raises(ConfigError, match=r"is a reward model .*not a policy"):
        GRPOConfig(init_adapter=str(folder))


def test_a_checkpoint_folder_is_no_output_dir(tmp_path):
    """Found by a fault hunt: it read as a finished run, and the advice (--overwrite) moved the checkpoint aside."""
    run = make_run(tmp_path / "run", INTERRUPTED)
    before = snapshot(run)
    for case in (config(run / "checkpoint-2"), config(run / "checkpoint-2", overwrite=True)):
        with pytest.raises(RunDirError, match=r"is a checkpoint of the run in .*--resume-from-checkpoint"):
            decide_run_dir(case, explicit=True)
    assert snapshot(run) == before


def test_a_folder_holding_only_an_evaluation_takes_a_run(tmp_path):
    """Found by a fault hunt: --eval-only into a new folder made it 'files that are not a run' for training."""
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "grpo_training.log").write_text("evaluation\n")
    (folder / "eval_results.json").write_text("{}")
    assert run_dir_state(folder) == NEW
    assert decide_run_dir(config(folder), explicit=True).action == "start"
    (folder / "notes.txt").write_text("mine")
    assert run_dir_state(folder) == FOREIGN
