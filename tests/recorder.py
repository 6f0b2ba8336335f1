"""A reward for lifecycle tests: records which prompts each step saw, and scores by length (so it varies).

With ``GRPO_SIGTERM_AT_STEP=N`` each process sends itself SIGTERM once, at step N, as a job scheduler would;
with ``GRPO_SIGTERM_RANK=R`` too, only rank R does.
"""

from __future__ import annotations

import json
import os
import signal


def record_reward(completions, prompts=None, trainer_state=None, **kwargs):
    path = os.environ.get("GRPO_RECORD_FILE")
    if path and prompts is not None and trainer_state is not None:
        with open(path, "a", encoding="utf-8") as handle:
            entry = {"step": trainer_state.global_step, "rank": int(os.environ.get("RANK", "0"))}
            handle.write(json.dumps({**entry, "prompts": [p[-1]["content"] for p in prompts]}))
            handle.write("\n")
    stop_at = os.environ.get("GRPO_SIGTERM_AT_STEP")  # every rank stops itself at the same step, like a scheduler
    only_rank = os.environ.get("GRPO_SIGTERM_RANK")  # or one rank alone, like `kill PID`
    if only_rank is not None and only_rank != os.environ.get("RANK", "0"):
        stop_at = None
    if stop_at and trainer_state is not None and trainer_state.global_step == int(stop_at):
        os.environ.pop("GRPO_SIGTERM_AT_STEP")
        os.kill(os.getpid(), signal.SIGTERM)
    return [float(len(c[0]["content"] if isinstance(c, list) else c) % 5) for c in completions]
