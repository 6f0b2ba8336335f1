"""Trainer callbacks of a run: metrics to the log and ``metrics.jsonl``, and a graceful stop on Ctrl-C/SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLogger(TrainerCallback):
    """Each TRL log entry becomes one log line and one JSON line in ``<run_dir>/metrics.jsonl`` (main process).

    The JSON lines feed ``plot_run.py``; they are appended, so a resumed run continues the same file.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        shown = {k: round(v, 4) for k, v in entry.items() if k in SHOWN_METRICS}
        if shown:
            logger.info("step %d/%d: %s", state.global_step, state.max_steps, shown)


SHOWN_METRICS = ("reward", "reward_std", "loss", "kl", "completions/mean_length", "eval_reward")


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
        logger.warning(
            "%s received: saving a checkpoint after this step, then stopping (press Ctrl-C again to quit now)",
            signal.Signals(signum).name,
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control
