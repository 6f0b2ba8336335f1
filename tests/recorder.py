"""A reward for lifecycle tests: records which prompts each step saw, and scores by length (so it varies)."""

from __future__ import annotations

import json
import os


def record_reward(completions, prompts=None, trainer_state=None, **kwargs):
    path = os.environ.get("GRPO_RECORD_FILE")
    if path and prompts is not None and trainer_state is not None:
        with open(path, "a", encoding="utf-8") as handle:
            entry = {"step": trainer_state.global_step, "rank": int(os.environ.get("RANK", "0"))}
            handle.write(json.dumps({**entry, "prompts": [p[-1]["content"] for p in prompts]}))
            handle.write("\n")
    return [float(len(c[0]["content"] if isinstance(c, list) else c) % 5) for c in completions]
