"""Run plumbing: logging to terminal and files, output-directory safety, trackers, provenance."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from config import GRPOConfig

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "grpo_training.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "bitsandbytes")


class RunDirError(RuntimeError):
    """An output directory that would be overwritten; the message gives the options."""


def world_size() -> int:
    """Processes in this run (set by torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging(run_dir: Path | None, level: int = logging.INFO) -> None:
    """Terminal plus ``grpo_training.log`` in the run directory and in the working directory (the seed's place).

    transformers/TRL messages and Python warnings go through the same handlers, and what is printed to stdout
    (TRL's completion tables, the Trainer's metric lines) is copied into the run's log, so the log holds what
    the terminal shows; only the progress bar's redraws are left out.  Only the main process writes files.
    """
    import transformers

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_grpo", False):
            root.removeHandler(handler)
            handler.close()
    restore_stdout()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if is_main_process():
        log_files = {Path.cwd().resolve() / LOG_FILE_NAME}
        if run_dir is not None:
            log_files.add(run_dir.resolve() / LOG_FILE_NAME)
            sys.stdout = StdoutToLog(sys.stdout, run_dir / LOG_FILE_NAME)
        handlers.extend(logging.FileHandler(path, encoding="utf-8") for path in sorted(log_files))
    for handler in handlers:
        handler._grpo = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    # Other ranks repeat what the main process says; they only speak up for warnings and errors.
    root.setLevel(level if is_main_process() else max(level, logging.WARNING))
    logging.captureWarnings(True)
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.set_verbosity_warning()


class StdoutToLog:
    """A stdout that also appends what is printed to a log file (line by line, ``\r`` redraws dropped)."""

    def __init__(self, terminal, path: Path):
        self.terminal = terminal
        self.path = path
        self._pending = ""

    def write(self, text: str) -> int:
        self.terminal.write(text)
        self._pending += text
        if "\n" in self._pending:
            complete, self._pending = self._pending.rsplit("\n", 1)
            lines = [line.rsplit("\r", 1)[-1] for line in complete.split("\n")]
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()

    def __getattr__(self, name):
        return getattr(self.terminal, name)


def restore_stdout() -> None:
    """Undo the stdout copy of ``setup_logging`` (at the end of a run started from Python)."""
    sys.stdout = getattr(sys.stdout, "terminal", sys.stdout)


def _is_non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def prepare_output_dir(config: GRPOConfig, explicit: bool, resuming: bool) -> Path:
    """The directory this run writes to, never clobbering an earlier run.

    An explicitly chosen non-empty directory is an error unless ``overwrite_output_dir`` is set or the run
    resumes from it; a default one moves on to the first free ``<dir>-2``, ``<dir>-3``, ...  With several
    processes the main process decides and the others take its answer, so that all write to one directory.
    """
    if world_size() == 1:
        return _choose_output_dir(config, explicit, resuming)
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    decision = [None, None]  # [directory or error message, whether it is an error]
    # cpu=True makes accelerate start the gloo process group on machines without CUDA.
    if PartialState(cpu=not torch.cuda.is_available()).is_main_process:
        try:
            decision = [str(_choose_output_dir(config, explicit, resuming)), False]
        except RunDirError as err:
            decision = [str(err), True]
    broadcast_object_list(decision)
    if decision[1]:
        raise RunDirError(decision[0])
    config.output_dir = decision[0]
    Path(decision[0]).mkdir(parents=True, exist_ok=True)
    return Path(decision[0])


def _choose_output_dir(config: GRPOConfig, explicit: bool, resuming: bool) -> Path:
    path = Path(config.output_dir)
    if _is_non_empty_dir(path) and not (config.overwrite_output_dir or resuming):
        if explicit:
            raise RunDirError(
                f"output directory {path} already holds a run. Pass --overwrite to write into it, "
                f"--resume-from-checkpoint latest to continue it, or another --output-dir."
            )
        suffix = 2
        while _is_non_empty_dir(Path(f"{path}-{suffix}")):
            suffix += 1
        path = Path(f"{path}-{suffix}")
        config.output_dir = str(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def decide_trackers(config: GRPOConfig) -> list[str]:
    """TRL ``report_to`` for this run.  W&B never blocks: without credentials it runs offline or stays off."""
    if config.report_to is not None:
        trackers = list(config.report_to)
    elif config.use_wandb is False:
        trackers = []
    else:
        wanted = bool(config.use_wandb or config.wandb_project)
        trackers = ["wandb"] if wanted or _wandb_credentials() else []
        if not trackers:
            logger.info(
                "W&B off: no credentials found (wandb login / WANDB_API_KEY); --wandb-project NAME logs offline"
            )
    if "wandb" not in trackers:
        return trackers
    if importlib.util.find_spec("wandb") is None:
        logger.warning("W&B off: the wandb package is not installed (pip install wandb)")
        return [t for t in trackers if t != "wandb"]
    if config.wandb_project:
        os.environ["WANDB_PROJECT"] = config.wandb_project
    if os.environ.get("WANDB_MODE") not in ("offline", "disabled") and not _wandb_credentials():
        os.environ["WANDB_MODE"] = "offline"
        logger.info("W&B offline: no credentials found; runs are kept under ./wandb (wandb sync to upload later)")
    return trackers


def keep_previous(path: Path) -> None:
    """Move an existing ``path`` aside to ``<stem>.<its mtime>.<suffix>`` so that nothing is overwritten."""
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        kept = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
        path.rename(kept)
        logger.info("earlier %s kept as %s", path.name, kept.name)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_provenance() -> dict:
    return {"command": sys.argv, "versions": package_versions(), "git_commit": git_commit()}
