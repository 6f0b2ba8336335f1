"""Checkpoints of a run: written atomically, verified before a resume, matched against the run that resumes them.

The Trainer writes ``checkpoint-N`` file by file; a kill during the save would leave a folder that looks like a
checkpoint but cannot be resumed.  ``install_atomic_checkpoints`` makes the Trainer write into
``<run>/.checkpoint-staging/checkpoint-N`` and renames the folder into place once every file is written, so a
``checkpoint-N`` folder in a run is always whole.  ``resolve_checkpoint('latest')`` still verifies what it picks
(state parses, adapter weights load) and falls back to the newest good one, for folders written by older
versions or damaged later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

from config_base import deepspeed_enabled, fsdp_enabled, read_adapter_config, world_size
from models import ModelError

logger = logging.getLogger(__name__)

STAGING_DIR = ".checkpoint-staging"
# The Trainer's optimizer state: plain / FSDP full state dict (accelerate's name) / FSDP sharded (a DCP folder)
OPTIMIZER_STATES = ("optimizer.pt", "optimizer.bin", "optimizer_0")
TRAINER_STATE = "trainer_state.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
# adapter_config.json key -> the flag that sets it; a resume must use the same values.
ADAPTER_SETTINGS = {"r": "--lora-rank", "lora_alpha": "lora_alpha", "target_modules": "lora_target_modules"}


class CheckpointError(FileNotFoundError):
    """A checkpoint that cannot be resumed; the message names the folder, what is wrong and the alternatives."""


def checkpoint_step(path: Path) -> int | None:
    """N of a ``checkpoint-N`` folder name, None for any other name."""
    match = CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of ``output_dir`` with a trainer state (written last), oldest first."""
    found = [
        p
        for p in Path(output_dir).glob("checkpoint-*")
        if checkpoint_step(p) is not None and (p / TRAINER_STATE).is_file()
    ]
    return sorted(found, key=checkpoint_step)


def read_trainer_state(checkpoint: str | Path) -> dict:
    """The checkpoint's ``trainer_state.json`` (global_step, max_steps, log history)."""
    return json.loads((Path(checkpoint) / TRAINER_STATE).read_text(encoding="utf-8"))


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed (missing file, unreadable state or weights), or None if it can."""
    if not checkpoint.is_dir():
        return "no such folder"
    missing = [name for name in (TRAINER_STATE, ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (checkpoint / name).is_file()]
    if not any((checkpoint / name).exists() for name in OPTIMIZER_STATES) and not any(checkpoint.glob("global_step*")):
        missing.append("optimizer.pt")  # DeepSpeed keeps its optimizer state in global_step*/
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        step = read_trainer_state(checkpoint)["global_step"]
        json.loads((checkpoint / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError, OSError) as err:
        return f"unreadable {TRAINER_STATE} or {ADAPTER_CONFIG} ({type(err).__name__}: {err})"
    if not isinstance(step, int):
        return f"{TRAINER_STATE} has no integer global_step"
    return _weights_problem(checkpoint / ADAPTER_WEIGHTS) or _torch_archive_problem(checkpoint)


def _torch_archive_problem(checkpoint: Path) -> str | None:
    """A ``torch.save`` file of the checkpoint (optimizer, scheduler, RNG states) cut short: it is a zip archive whose
    directory sits at its end (a truncated optimizer.pt failed mid-resume with PytorchStreamReader's RuntimeError,
    and ``latest`` did not fall back: fault hunt)."""
    for path in sorted(checkpoint.glob("*.pt")) + sorted(checkpoint.glob("*.pth")):
        if not zipfile.is_zipfile(path):
            return f"{path.name} is not a complete torch archive (cut short?)"
    return None


def _weights_problem(path: Path) -> str | None:
    """Load every tensor of a safetensors file; a truncated or corrupt file is reported, not raised."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        return f"{ADAPTER_WEIGHTS} does not load ({err})"
    return None


# How a launch stores the Trainer's state: accelerate's FSDP files, DeepSpeed's global_step* folders, or plain
# files (one process or DDP); a checkpoint resumes only under the kind of launch that wrote it.
LAUNCH_KINDS = {
    "fsdp": "FSDP (accelerate launch --config_file config/accelerate/fsdp2.yaml)",
    "deepspeed": "DeepSpeed (accelerate launch --config_file config/accelerate/zero2.yaml or zero3.yaml)",
    "plain": "one process or DDP (python train_grpo.py, or config/accelerate/ddp.yaml)",
}


def written_by(checkpoint: Path) -> str:
    """The kind of launch (a ``LAUNCH_KINDS`` key) that wrote ``checkpoint``, from the files it left."""
    if any(checkpoint.glob("pytorch_model_fsdp*")):
        return "fsdp"
    if any(checkpoint.glob("global_step*")):
        return "deepspeed"
    return "plain"


def this_launch() -> str:
    return "fsdp" if fsdp_enabled() else "deepspeed" if deepspeed_enabled() else "plain"


def check_launch_matches(checkpoint: str | Path) -> None:
    """Refuse, before any loading, a checkpoint another kind of launch wrote: the Trainer fails on it only after the
    model is loaded (a plain process: "only supported when using PyTorch FSDP"; FSDP on a plain checkpoint: a
    missing optimizer.bin on one process while the others wait)."""
    wrote, here = written_by(Path(checkpoint)), this_launch()
    if wrote != here:
        raise CheckpointError(
            f"{checkpoint} was written under {LAUNCH_KINDS[wrote]}, and this run is launched as {LAUNCH_KINDS[here]}; "
            f"the optimizer state is stored differently. Resume it under the launch that wrote it, or start a new "
            f"run from its adapter (trained LoRA weights, fresh optimizer): --init-adapter {checkpoint} with another "
            f"--output-dir."
        )


def written_by_processes(checkpoint: Path) -> int:
    """How many processes wrote ``checkpoint``: the Trainer saves one RNG state per process (rng_state_<i>.pth)."""
    return max(1, len(list(checkpoint.glob("rng_state_*.pth"))))


def warn_if_process_count_changed(checkpoint: str | Path) -> None:
    """Resuming with another number of processes works, but each step then sees another global batch."""
    before, now = written_by_processes(Path(checkpoint)), world_size()
    if before != now:
        logger.warning(
            "%s was written by %d process(es), this run has %d: each optimizer step now takes %s as many completions, "
            "and the data order differs from a run that was not interrupted",
            checkpoint,
            before,
            now,
            f"{now / before:g} times",
        )


def resolve_checkpoint(resume: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint folder to resume from: ``resume`` itself, verified, or for 'latest' the newest good one
    in ``output_dir`` (a damaged newer one is skipped with a warning); either must match this launch."""
    checkpoint = _find_checkpoint(resume, output_dir)
    if checkpoint is not None:
        check_launch_matches(checkpoint)
        warn_if_process_count_changed(checkpoint)
    return checkpoint


def _find_checkpoint(resume: str | None, output_dir: str | Path) -> str | None:
    if not resume:
        return None
    if resume != "latest":
        problem = checkpoint_problem(Path(resume))
        if problem:
            good = [p.name for p in complete_checkpoints(output_dir)] or "none"
            raise CheckpointError(
                f"--resume-from-checkpoint {resume}: not a complete checkpoint folder ({problem}); "
                f"complete ones in {output_dir}: {good}"
            )
        return resume
    candidates = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if checkpoint_step(p) is not None), key=checkpoint_step
    )
    for checkpoint in reversed(candidates):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        logger.warning("skipping %s: %s; trying the one before it", checkpoint, problem)
    raise CheckpointError(f"--resume-from-checkpoint latest: no complete checkpoint-* folder in {output_dir}")


def check_adapter_matches(checkpoint: str | Path, model) -> None:
    """Refuse a checkpoint whose LoRA adapter differs from this run's (base model, rank, alpha, targets):
    its weights would not fit, or would fit a different model."""
    peft_config = getattr(model, "peft_config", {}).get("default")
    saved = read_adapter_config(checkpoint)  # {} when there is none: nothing to compare
    if not saved or peft_config is None:
        return
    saved_base = saved.get("base_model_name_or_path")
    if saved_base and not _same_model(saved_base, peft_config.base_model_name_or_path):
        raise ModelError(
            f"checkpoint {checkpoint} was trained on {saved_base}, but this run loads "
            f"{peft_config.base_model_name_or_path}; resume with the same --model, or start a new --output-dir."
        )
    for key, setting in ADAPTER_SETTINGS.items():
        ours, theirs = _comparable(getattr(peft_config, key, None)), _comparable(saved.get(key))
        if theirs is not None and ours != theirs:
            raise ModelError(
                f"checkpoint {checkpoint} has a LoRA adapter with {key}={theirs}, but this run uses {ours}; "
                f"resume with {setting} {theirs}, or start a new run in another --output-dir."
            )


def _same_model(saved: str, loaded: str) -> bool:
    """The same hub id, or the same local folder however written (a run trained with --model ../model resumed with
    its absolute path was refused: fault hunt)."""
    if saved == loaded:
        return True
    paths = [Path(name).expanduser() for name in (saved, loaded)]
    return all(path.is_dir() for path in paths) and paths[0].resolve() == paths[1].resolve()


def _comparable(value):
    """Target-module lists compare as sets (PEFT stores them as a set, JSON as a list)."""
    return sorted(value) if isinstance(value, (list, set, tuple)) else value


def install_atomic_checkpoints(trainer) -> None:
    """Make ``trainer`` write each checkpoint under a temporary name and rename it into place when complete.

    The Trainer has no option for this, so its ``_save_checkpoint`` is wrapped on this instance: during the save
    its output directory reads as the staging folder, then the main process renames the finished folder (after
    every process has written its part) and applies ``save_total_limit`` to the real checkpoints.
    """
    from transformers.trainer_utils import rotate_checkpoints

    save = trainer._save_checkpoint

    def atomic_save(model, trial=None):
        run_dir = Path(trainer.args.output_dir)
        staging = run_dir / STAGING_DIR
        trainer._get_output_dir = lambda trial=None: str(staging)
        try:
            save(model, trial)
        finally:
            del trainer._get_output_dir
        trainer.accelerator.wait_for_everyone()
        if trainer.args.should_save:
            final = publish(staging / f"checkpoint-{trainer.state.global_step}", run_dir)
            with contextlib.suppress(OSError):
                staging.rmdir()  # only when empty: other processes' leftovers stay for clear_staging
            if trainer.state.best_model_checkpoint and Path(trainer.state.best_model_checkpoint).parent == staging:
                trainer.state.best_model_checkpoint = str(run_dir / Path(trainer.state.best_model_checkpoint).name)
            rotate_checkpoints(
                str(run_dir), trainer.args.save_total_limit, trainer.state.best_model_checkpoint, use_mtime=False
            )
            logger.info("checkpoint saved: %s", final)
        trainer.accelerator.wait_for_everyone()

    trainer._save_checkpoint = atomic_save


def gather_adapter_only(trainer) -> None:
    """FSDP2 with LoRA: save the adapter without gathering the frozen model.

    Under FSDP with full state dicts, transformers' ``save_model`` takes ``accelerator.get_state_dict(model)``,
    which gathers every weight of the model into the main process's memory (141 GB for a 70B model, at every
    checkpoint) before PEFT keeps the adapter's few. Here only the trainable parameters are gathered, as
    accelerate's own ``save_fsdp_model(adapter_only=True)`` already does for the checkpoint's model state."""
    accelerator = trainer.accelerator
    if not getattr(accelerator, "is_fsdp2", False):
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    accelerator.get_state_dict = lambda model, unwrap=True: get_model_state_dict(model, options=options)


def publish(staged: Path, run_dir: Path) -> Path:
    """Rename a fully written checkpoint folder into ``run_dir``, replacing one of the same step."""
    final = run_dir / staged.name
    if final.exists():
        replaced = staged.with_name(f"replaced-{staged.name}")
        shutil.rmtree(replaced, ignore_errors=True)
        final.rename(replaced)
        staged.rename(final)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        staged.rename(final)
    return final


def clear_staging(run_dir: Path) -> None:
    """Remove what a killed save left half-written (never a complete checkpoint: those were renamed)."""
    staging = run_dir / STAGING_DIR
    if staging.exists():
        shutil.rmtree(staging)
        logger.info("removed an unfinished checkpoint save in %s", staging)


def completes_its_run(checkpoint: str | Path, max_steps: int) -> bool:
    """Whether ``checkpoint`` is the last step of a run of ``max_steps`` steps (0 or less: of the length it was
    saved with).  The Trainer would still train one step past it, so such a resume trains nothing."""
    state = read_trainer_state(checkpoint)
    saved_max = state.get("max_steps")
    return bool(saved_max) and state["global_step"] >= saved_max and (max_steps <= 0 or max_steps == saved_max)
