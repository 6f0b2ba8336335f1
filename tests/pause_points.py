"""``train_grpo.py`` with a pause at a chosen point, so that a test can kill -9 the process exactly there.

GRPO_PAUSE=checkpoint-save:N pauses inside the save of checkpoint-N (weights and optimizer written, trainer state
not yet); GRPO_PAUSE=final-save pauses right after the final adapter is written, before the run is marked
finished.  The process writes GRPO_PAUSE_FLAG when it reaches the point, then sleeps until it is killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpo_trainer
from train_grpo import cli


def pause(where: str) -> None:
    Path(os.environ["GRPO_PAUSE_FLAG"]).write_text(where)
    time.sleep(600)


def pause_in_checkpoint_save(step: int) -> None:
    from transformers import Trainer

    save_rng_state = Trainer._save_rng_state

    def paused(self, output_dir):
        save_rng_state(self, output_dir)
        if self.state.global_step == step:
            pause(output_dir)

    Trainer._save_rng_state = paused


def pause_after_final_save() -> None:
    save_model = grpo_trainer.GRPOTrainer.save_model

    def paused(self, path=None):
        target = save_model(self, path)
        pause(str(target))
        return target

    grpo_trainer.GRPOTrainer.save_model = paused


if __name__ == "__main__":
    point = os.environ["GRPO_PAUSE"]
    if point.startswith("checkpoint-save:"):
        pause_in_checkpoint_save(int(point.split(":")[1]))
    else:
        pause_after_final_save()
    sys.exit(cli(sys.argv[1:]))
