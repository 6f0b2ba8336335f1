"""Trainer callbacks of a run: what the terminal shows, metrics to the log and ``metrics.jsonl``, resume checks,
and a graceful stop on Ctrl-C/SIGTERM.

The terminal is for a person: the progress bar with its ETA, one summary line per logging step and TRL's
completions table every ``log_completions_steps`` steps.  The full metrics of every step go to
``grpo_training.log`` and ``metrics.jsonl``, and every completions table to the log.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from checkpoints import gather_adapter_only, install_atomic_checkpoints, read_trainer_state
from plot_run import metrics_entry
from rewards import cancel_pending_rewards
from run_utils import FILE_ONLY, RunDirError, heartbeat

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
# metric -> label of the one-line summary, in this order
SUMMARY_METRICS = {
    "reward": "reward",
    "reward_std": "std",
    "loss": "loss",
    "kl": "kl",
    "completions/mean_length": "len",
    "learning_rate": "lr",
    "eval_reward": "eval reward",
}


def prepare_trainer(trainer, config) -> None:
    """Fit a built ``trl.GRPOTrainer`` to this package's terminal and checkpoint rules (before ``train``)."""
    install_atomic_checkpoints(trainer)
    gather_adapter_only(trainer)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress())
    trainer.add_callback(CompletionsEveryN(config.log_completions_steps))


class QuietProgress(ProgressCallback):
    """transformers' progress bar (with ETA) without the raw metrics dict it prints at every logging step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control


class CompletionsEveryN(TrainerCallback):
    """TRL prints a completions table right after each log; the terminal shows the first step's and then every
    ``every`` steps' (the run's log file keeps all of them).  0 never shows it on the terminal."""

    def __init__(self, every: int):
        self.every = every

    def on_log(self, args, state, control, logs=None, **kwargs):
        shown = self.every > 0 and (state.global_step == 1 or state.global_step % self.every == 0)
        _set_terminal_muted(not shown)

    def on_step_begin(self, args, state, control, **kwargs):
        _set_terminal_muted(False)

    def on_train_end(self, args, state, control, **kwargs):
        _set_terminal_muted(False)


def _set_terminal_muted(muted: bool) -> None:
    """Mute the terminal side of the stdout copy made by ``run_utils.setup_logging`` (no-op without one)."""
    if hasattr(sys.stdout, "terminal_muted"):
        sys.stdout.terminal_muted = muted


class MetricsLogger(TrainerCallback):
    """Each TRL log entry becomes one summary line on the terminal, the full entry in the log file, and one JSON
    line in ``<run_dir>/metrics.jsonl`` (main process).

    The JSON lines feed ``plot_run.py``; they are appended, so a resumed run continues the same file.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE

    def continue_from(self, step: int) -> None:
        """A run resumed at checkpoint ``step``: the entries logged after it (by the run killed after that checkpoint)
        and a line the kill cut short are dropped, so the file holds one trajectory (fault hunt: a kill -9 and a
        resume logged steps 1, 2, 3, 3, 4, and a cut line made the file unplottable)."""
        if not self.path.is_file():
            return
        kept, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            entry = metrics_entry(line)
            if entry is not None and entry["step"] <= step:
                kept.append(line + "\n")
            else:
                dropped += 1
        if dropped:
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            temporary.write_text("".join(kept), encoding="utf-8")
            os.replace(temporary, self.path)
            logger.info("%s: %d entries after step %d (or cut short) dropped for the resume", self.path, dropped, step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        heartbeat(self.path.parent)
        logger.info("metrics %s", json.dumps(entry), extra={FILE_ONLY: True})
        summary = summary_line(entry)
        if summary:
            logger.info("step %d/%d  %s", state.global_step, state.max_steps, summary)


def summary_line(entry: dict) -> str:
    """The few numbers a person watches, e.g. ``reward 0.220  std 0.180  loss 0.3316  len 19.2  lr 5e-05``."""
    parts = [f"{label} {entry[key]:.4g}" for key, label in SUMMARY_METRICS.items() if entry.get(key) is not None]
    return "  ".join(parts)


class ResumeCheck(TrainerCallback):
    """Refuse to train on from a checkpoint whose learning-rate schedule has ended (it would train at learning
    rate 0), and say so when a resumed run's length differs from the checkpoint's (the schedule is rescaled)."""

    def __init__(self, checkpoint: str):
        self.checkpoint = checkpoint
        saved = read_trainer_state(checkpoint)
        self.saved_step, self.saved_max = saved["global_step"], saved.get("max_steps")

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.saved_max or state.max_steps == self.saved_max:
            return
        decays = "constant" not in str(args.lr_scheduler_type)
        if decays and self.saved_step >= self.saved_max:
            raise RunDirError(
                f"{self.checkpoint} is the last step of a {self.saved_max}-step run: its learning-rate schedule "
                f"has reached 0, so training on to step {state.max_steps} would not change the adapter. "
                f"To train longer, start a new run in another --output-dir with --max-steps {state.max_steps}."
            )
        logger.warning(
            "resuming a %d-step run as a %d-step run: the learning-rate schedule is recomputed for %d steps from "
            "step %d on, so this run will not match one trained for %d steps from the start",
            self.saved_max,
            state.max_steps,
            state.max_steps,
            self.saved_step,
            state.max_steps,
        )


class GracefulStop(TrainerCallback):
    """First Ctrl-C or SIGTERM: finish the step, save a checkpoint, stop. Second one: exit at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def install(self) -> GracefulStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.requested:
            logging.shutdown()
            os._exit(130)
        self.requested = True
        cancel_pending_rewards()  # a stuck reward gets a short grace period, so this step still ends and saves
        logger.warning(
            "%s received: saving a checkpoint after this step, then stopping (press Ctrl-C again to quit now)",
            signal.Signals(signum).name,
        )

    def on_step_end(self, args, state, control, **kwargs):
        if any_process(self.requested):
            self.requested = True  # also where the signal reached another process: this run was interrupted
            control.should_save = True
            control.should_training_stop = True
        return control


def any_process(flag: bool) -> bool:
    """True when ``flag`` is set on any process of the run.

    A signal reaches the ranks at slightly different moments (or one rank alone, from ``kill``); a rank that
    stopped while the others trained on would leave them waiting forever in the next collective. Agreeing at
    every step end costs one tiny all-reduce."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch
    from accelerate import PartialState

    votes = torch.tensor([int(flag)], device=PartialState().device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())
