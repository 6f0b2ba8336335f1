"""Run plumbing: logging to terminal and files, output-directory safety, trackers, provenance."""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import json
import logging
import logging.handlers
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from checkpoints import CheckpointError, clear_staging, complete_checkpoints, read_trainer_state, resolve_checkpoint
from config import ConfigError, GRPOConfig
from config_base import CAUSAL_LM, foreign_adapter, world_size

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "grpo_training.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose ERROR records go to the log files only: the error that stops a run is reported by one line of
# ours, and theirs (e.g. datasets' "Failed to read schema" before it raises) would be a second one.
LIBRARIES = {"datasets", "transformers", "trl", "peft", "accelerate", "huggingface_hub", "torch"}
FILE_ONLY = "file_only"  # extra={FILE_ONLY: True}: the record goes to the log files, not to the terminal
TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "bitsandbytes")


class RunDirError(RuntimeError):
    """A run directory or checkpoint that this run may not use as asked; the message gives the options."""


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def local_rank() -> int:
    """This process's index on its machine (set by torchrun / accelerate launch; its GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


# Records logged before the run directory exists (data, rewards, model loading: the run directory is created only
# once the inputs are checked), copied into the run's own log when it is opened.
_EARLY_RECORDS = logging.handlers.BufferingHandler(capacity=100_000)


def setup_logging(run_dir: Path | None, level: int = logging.INFO) -> None:
    """Terminal plus ``grpo_training.log`` in the run directory and in the working directory (the seed's place).

    transformers/TRL messages and Python warnings go through the same handlers, and what is printed to stdout
    (TRL's completion tables) is copied into the run's log.  The terminal gets each warning once, no tracebacks
    and no records marked ``FILE_ONLY``; the log files get everything.  Only the main process writes files.
    """
    import transformers

    # The log files are opened before the current handlers go: a run folder that cannot be written leaves them in
    # place, so the error is one ERROR line in ./grpo_training.log too (it was printed bare: fault hunt).
    files = _open_log_files(run_dir) if is_main_process() else {}
    root = logging.getLogger()
    for handler in list(root.handlers):
        if _printed_by_basic_config(handler):
            root.removeHandler(handler)  # Unsloth calls logging.basicConfig at import: every line twice
        elif getattr(handler, "_grpo", False):
            root.removeHandler(handler)
            if handler is not _EARLY_RECORDS:  # closing it would drop the records kept for the run's log
                handler.close()
    restore_stdout()
    handlers: list[logging.Handler] = [TerminalHandler(), *files.values()]
    if is_main_process():
        if run_dir is not None:
            sys.stdout = StdoutToLog(sys.stdout, run_dir / LOG_FILE_NAME)
            for record in _EARLY_RECORDS.buffer:  # what was said before the run directory could be opened
                files[run_dir.resolve() / LOG_FILE_NAME].handle(record)
        _EARLY_RECORDS.buffer.clear()
        if run_dir is None:
            handlers.append(_EARLY_RECORDS)
    for handler in handlers:
        handler._grpo = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    # Other ranks repeat what the main process says; they only speak up for warnings and errors.
    root.setLevel(level if is_main_process() else max(level, logging.WARNING))
    logging.captureWarnings(True)
    transformers.utils.logging.disable_default_handler()
    _drop_library_handlers("datasets")  # its own stderr handler would print each record a second time
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.set_verbosity_warning()


def _open_log_files(run_dir: Path | None) -> dict[Path, logging.FileHandler]:
    """A handler for ``./grpo_training.log`` and for the run folder's, formatted; none left open if one fails."""
    paths = {Path.cwd().resolve() / LOG_FILE_NAME}
    if run_dir is not None:
        paths.add(run_dir.resolve() / LOG_FILE_NAME)
    opened: dict[Path, logging.FileHandler] = {}
    try:
        for path in sorted(paths):
            opened[path] = logging.FileHandler(path, encoding="utf-8")
            opened[path].setFormatter(logging.Formatter(LOG_FORMAT))
    except OSError:
        for handler in opened.values():
            handler.close()
        raise
    return opened


def _printed_by_basic_config(handler: logging.Handler) -> bool:
    """A plain terminal handler on the root logger, as ``logging.basicConfig`` adds it (a library's import)."""
    streams = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    return type(handler) is logging.StreamHandler and handler.stream in streams


def _drop_library_handlers(name: str) -> None:
    library = logging.getLogger(name)
    for handler in list(library.handlers):
        library.removeHandler(handler)
    library.propagate = True


def log_file_paths() -> list[Path]:
    """The log files this process writes (run directory first), for messages that point to them."""
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_grpo", False)]
    files = [Path(h.baseFilename) for h in ours if isinstance(h, logging.FileHandler)]
    return sorted(files, key=lambda path: path.parent == Path.cwd().resolve())


class TerminalHandler(logging.StreamHandler):
    """stderr for a person: written around tqdm progress bars, each warning once, tracebacks left to the log
    files, records logged with ``extra={FILE_ONLY: True}`` left out."""

    def __init__(self):
        super().__init__(sys.stderr)
        self._warned: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, FILE_ONLY, False):
            return False
        if record.levelno >= logging.ERROR and record.name.split(".")[0] in LIBRARIES:
            return False  # the error that stops the run is reported by our own one line
        if record.levelno == logging.WARNING:
            message = record.getMessage()
            if message in self._warned:
                return False
            self._warned.add(message)
        return super().filter(record)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(record)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except (OSError, ValueError, TypeError):
            self.handleError(record)


class StdoutToLog:
    """A stdout that also appends what is printed to a log file (line by line, ``\r`` redraws dropped).

    ``terminal_muted`` keeps the terminal side quiet while the log still gets the text (callbacks use it to
    show TRL's completions table every N steps only).
    """

    def __init__(self, terminal, path: Path):
        self.terminal = terminal
        self.path = path
        self.terminal_muted = False
        self._pending = ""

    def write(self, text: str) -> int:
        if not self.terminal_muted:
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


# ---- Run directories -------------------------------------------------------------------------------------------
# A run directory is in one of these states, read from its ``run_state.json`` marker (written atomically):
#
#   new          missing or empty                  -> a run starts in it
#   running      marker "running", its process alive on this host
#                                                  -> refused: one run writes to a directory at a time
#   interrupted  marker "interrupted", or "running" whose process is gone (kill -9, crash), or an older run
#                with checkpoints and no final adapter
#                                                  -> --resume-from-checkpoint latest continues it
#   finished     marker "finished", or an older run with a final adapter
#                                                  -> kept as it is; only --overwrite replaces it
#   foreign      other files, no run               -> kept as it is; only --overwrite replaces it
#
# --overwrite first moves the old contents to a sibling ``<dir>.old-<time>`` and starts with an empty directory,
# so nothing of an old run (checkpoints, metrics.jsonl) mixes into the new one.  A checkpoint is resumed only into
# the run that owns it (the directory it lies in) or into a new directory, which starts a new run from it.  A
# finished run is never resumed: its learning-rate schedule has ended.
#
# ``decide_run_dir`` only reads (so that the config can be completed with its answer before anything is
# written); ``open_run_dir`` does the writing once the inputs have been checked, so a run that fails on its
# inputs leaves no new folder behind.

RUN_STATE_FILE = "run_state.json"
NEW, RUNNING, INTERRUPTED, FINISHED, FOREIGN = "new", "running", "interrupted", "finished", "foreign"
START, REPLACE, RESUME, EVALUATE = "start", "replace", "resume", "evaluate"
FINAL_ADAPTER = "adapter_model.safetensors"
HEARTBEAT_STALE_S = 1800  # a run on another host that has not logged for this long is taken as stopped


@dataclass(frozen=True)
class RunPlan:
    """What a run does with its directory: ``action`` is start, replace (``--overwrite``), resume or evaluate."""

    path: Path
    action: str
    checkpoint: str | None = None
    found: str = NEW  # the state the directory was in


def read_run_state(run_dir: Path) -> dict | None:
    """The directory's marker, or None when it has none (or an unreadable one: a kill mid-write of an older
    version; the marker itself is written atomically)."""
    try:
        marker = json.loads((run_dir / RUN_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def run_dir_state(run_dir: Path) -> str:
    """The state of ``run_dir`` (see the table above)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"output directory {run_dir} is a file; choose another --output-dir.")
    if run_dir.is_symlink() and not run_dir.exists():  # mkdir failed on it after the model had loaded (fault hunt)
        raise RunDirError(
            f"output directory {run_dir} is a link to {os.readlink(run_dir)}, which does not exist; create that "
            "folder or choose another --output-dir."
        )
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return NEW
    marker = read_run_state(run_dir)
    if marker is None:
        if (run_dir / FINAL_ADAPTER).is_file():
            return FINISHED
        if complete_checkpoints(run_dir):
            return INTERRUPTED
        return NEW if _only_an_evaluation(run_dir) else FOREIGN
    if marker.get("state") == RUNNING:
        return RUNNING if _process_alive(marker) else INTERRUPTED
    return marker.get("state") if marker.get("state") in (INTERRUPTED, FINISHED) else FOREIGN


def _only_an_evaluation(run_dir: Path) -> bool:
    """A folder that --eval-only wrote and no run: its log and results (a base model scored into a new folder made it
    "files that are not a run", and training there was refused: fault hunt).  A run started there keeps them."""
    return all(p.name == LOG_FILE_NAME or p.name.startswith("eval_results") for p in run_dir.iterdir())


def _process_alive(marker: dict) -> bool:
    """Whether the process that wrote a 'running' marker still runs (this process's own marker is stale:
    a run started from Python that failed).

    Another host's run cannot be asked: it counts as alive while its marker was updated (every logged step)
    within ``HEARTBEAT_STALE_S`` (a fault hunt: shared storage let --overwrite move a live run's folder aside).  On
    this host, a pid that now belongs to another process (a restart recycled it) is not the run's (it locked the
    folder for good): the process start time recorded in the marker must match."""
    pid = marker.get("pid")
    if marker.get("host") != socket.gethostname():
        return _seconds_since(marker.get("updated")) < HEARTBEAT_STALE_S
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    recorded, now = marker.get("started"), process_start(pid)
    return recorded is None or now is None or recorded == now


def _seconds_since(stamp) -> float:
    """Seconds since a marker's ``updated`` time (local time, as mark_run writes it); infinite if unreadable."""
    try:
        return time.time() - time.mktime(time.strptime(str(stamp), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return math.inf


def process_start(pid: int) -> int | None:
    """When ``pid`` started (Linux: clock ticks after boot, field 22 of /proc/PID/stat), None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def decide_run_dir(
    config: GRPOConfig, *, explicit: bool, evaluating: bool = False, previewing: bool = False
) -> RunPlan:
    """Where this run writes and what it does there; reads the file system, changes nothing.

    With several processes the main process decides and the others take its answer.
    """
    if world_size() == 1:
        return _decide(config, explicit, evaluating or previewing)
    return _decided_on_main(lambda: _decide(config, explicit, evaluating or previewing))


def _decide(config: GRPOConfig, explicit: bool, evaluating: bool) -> RunPlan:
    if not str(config.output_dir or "").strip():
        raise RunDirError("output_dir is empty; give the run a folder of its own, e.g. --output-dir grpo_outputs/run1.")
    path = Path(config.output_dir)
    if evaluating:
        state = run_dir_state(path)
        if state == RUNNING:  # its log and eval_results would mix with the run's (fault hunt)
            raise RunDirError(_in_use(path))
        if foreign_adapter(path, CAUSAL_LM):  # a reward model's folder (was: unknown keys in its run_config)
            raise RunDirError(
                f"{path} holds a reward model (train_reward_model.py), not a GRPO run: its held-out accuracy is in "
                f"its reward_model.json; use it as a reward with --reward-model {path}."
            )
        resume = config.resume_from_checkpoint  # the checkpoint to score, if one is named
        return RunPlan(path, EVALUATE, resolve_checkpoint(resume, path) if resume else None, found=state)
    _refuse_a_folder_that_is_not_the_runs(path, config)
    if (path / "trainer_state.json").is_file():  # "holds a finished run, pass --overwrite" moved it aside (fault hunt)
        raise RunDirError(
            f"output directory {path} is a checkpoint of the run in {path.parent}; continue that run with "
            f"--output-dir {path.parent} --resume-from-checkpoint {path}, or start a new one from it with "
            f"--init-adapter {path} and a new --output-dir."
        )
    resume = config.resume_from_checkpoint
    if resume and resume != "latest" and not explicit:
        path = Path(resume).parent  # without --output-dir, a checkpoint continues the run it belongs to
    state = run_dir_state(path)
    if resume:
        return _plan_resume(
            path, state, resume, config.overwrite_output_dir, getattr(config, "ADAPTER_TASK", CAUSAL_LM)
        )
    if state == NEW:
        return RunPlan(path, START)
    if state == RUNNING:
        raise RunDirError(_in_use(path))
    if config.overwrite_output_dir:
        return RunPlan(path, REPLACE, found=state)
    if not explicit:
        return RunPlan(next_free_dir(path), START)
    raise RunDirError(_occupied(path, state))


def _refuse_a_folder_that_is_not_the_runs(path: Path, config: GRPOConfig) -> None:
    """The working directory (or a folder above it) is never a run's folder, and --overwrite never moves the
    model or the data aside: found by a fault hunt, where `--output-dir $PWD --overwrite` moved the user's files
    to <dir>.old-<time> and `--output-dir <model folder> --overwrite` moved the base model."""
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise RunDirError(
            f"output directory {path} is the working directory or holds it; give the run a folder of its own, "
            "e.g. --output-dir grpo_outputs/run1."
        )
    if not config.overwrite_output_dir:
        return
    inputs = [("model", getattr(config, "model_name", None))]
    inputs += [("data", getattr(config, key, None)) for key in ("dataset_name", "dataset_path")]
    for what, given in inputs:
        if (
            given
            and Path(given).exists()
            and (target == Path(given).resolve() or target in Path(given).resolve().parents)
        ):
            raise RunDirError(
                f"--overwrite would move the {what} {given} aside with {path}; choose another --output-dir."
            )


def _plan_resume(path: Path, state: str, resume: str, overwrite: bool, task: str) -> RunPlan:
    if state == RUNNING:
        raise RunDirError(_in_use(path))
    if resume == "latest" and state == NEW:
        raise CheckpointError(
            f"--resume-from-checkpoint latest: {path} holds no run to continue; start one without "
            f"--resume-from-checkpoint, or name the run's folder with --output-dir."
        )
    checkpoint = resolve_checkpoint(resume, path)
    other = foreign_adapter(checkpoint, task)
    if other:  # it failed mid-load, after rewriting the other run's files
        what, script = other
        raise RunDirError(
            f"--resume-from-checkpoint {resume}: {checkpoint} is {what}'s checkpoint; continue that run with {script}, "
            f"or give this script a run of its own (another --output-dir)."
        )
    owner = Path(checkpoint).resolve().parent
    if owner != path.resolve():
        if state != NEW:
            raise RunDirError(_not_owner(checkpoint, owner, path, state))
        return RunPlan(path, RESUME, checkpoint, state)  # a new run that starts from another run's checkpoint
    if overwrite:
        raise RunDirError(
            f"--overwrite would move aside the run in {path} that --resume-from-checkpoint {resume} continues; "
            f"pass only one of them."
        )
    if state == FINISHED:
        raise RunDirError(_finished(path, checkpoint))
    return RunPlan(path, RESUME, checkpoint, state)


def next_free_dir(path: Path) -> Path:
    """The first of ``<path>-2``, ``<path>-3``, ... that is new (the default output directory moves on)."""
    suffix = 2
    while run_dir_state(Path(f"{path}-{suffix}")) != NEW:
        suffix += 1
    return Path(f"{path}-{suffix}")


def _in_use(path: Path) -> str:
    marker = read_run_state(path) or {}
    where = (
        ""
        if marker.get("host") == socket.gethostname()
        else f" on {marker.get('host')}, last heard from {marker.get('updated')}"
    )
    return (
        f"output directory {path} is in use by a run in progress (process {marker.get('pid')}{where}); wait for it, "
        f"stop it (Ctrl-C saves a checkpoint), or choose another --output-dir."
    )


def _occupied(path: Path, state: str) -> str:
    kept = (
        f"It is kept as it is: pass --overwrite (overwrite_output_dir=True in Python) to move it aside (to "
        f"{path}.old-<time>) and start over"
    )
    if state == INTERRUPTED:
        last = complete_checkpoints(path)
        if not last:  # a run that failed or was stopped before its first checkpoint: nothing to continue
            return (
                f"output directory {path} holds a run that stopped before its first checkpoint. {kept}, or choose "
                "another --output-dir."
            )
        return (
            f"output directory {path} holds an interrupted run (last checkpoint {last[-1].name}). Continue it with "
            f"--resume-from-checkpoint latest. {kept}, or choose another --output-dir."
        )
    what = "a finished run" if state == FINISHED else "files that are not a run of this trainer"
    return f"output directory {path} holds {what}. {kept}, or choose another --output-dir."


def _not_owner(checkpoint: str, owner: Path, path: Path, state: str) -> str:
    return (
        f"--resume-from-checkpoint {checkpoint}: that checkpoint belongs to the run in {owner}, not to {path} "
        f"(which holds {'a' if state != INTERRUPTED else 'an'} {state} run and is left as it is). Continue its own "
        f"run with --output-dir {owner} --resume-from-checkpoint latest, or start a new run from it with "
        f"--output-dir <a new folder> --resume-from-checkpoint {checkpoint}."
    )


def _finished(path: Path, checkpoint: str) -> str:
    state = read_trainer_state(checkpoint)
    return (
        f"{path} holds a finished run (step {state.get('global_step')} of {state.get('max_steps')}); a finished "
        f"run is not changed, and resuming it would train at the end of its learning-rate schedule (learning "
        f"rate 0). To train longer, start a new run from its adapter: --init-adapter {path} with another "
        f"--output-dir (and the --max-steps you want); the finished adapter stays in {path}."
    )


def _decided_on_main(decide) -> RunPlan:
    """Run ``decide`` on the main process and give every process its answer (or its error)."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    decision = [None, None]  # [plan or error message, error class name]
    # cpu=True makes accelerate start the gloo process group on machines without CUDA.
    if PartialState(cpu=not torch.cuda.is_available()).is_main_process:
        try:
            decision = [decide(), None]
        except (RunDirError, CheckpointError) as err:
            decision = [str(err), type(err).__name__]
    broadcast_object_list(decision)
    if decision[1] is not None:
        raise (CheckpointError if decision[1] == CheckpointError.__name__ else RunDirError)(decision[0])
    return decision[0]


def open_run_dir(plan: RunPlan) -> Path:
    """Create the run directory of ``plan`` (moving an old run aside for --overwrite) and mark it running;
    called once the run's inputs have been checked.  Only the main process writes."""
    if is_main_process():
        # The folder was checked before the data and the model were loaded; another run may have taken it since.
        if plan.action != EVALUATE and run_dir_state(plan.path) == RUNNING:
            raise RunDirError(_in_use(plan.path))
        if plan.action == REPLACE:
            moved = _move_aside(plan.path)
            logger.warning("--overwrite: the previous contents of %s were moved to %s", plan.path, moved)
        created = not plan.path.exists()
        try:
            plan.path.mkdir(parents=True, exist_ok=True)
            if plan.action in (START, REPLACE):
                _claim(plan.path)
            if plan.action == RESUME:
                clear_staging(plan.path)
            if plan.action != EVALUATE:
                mark_run(plan.path, RUNNING, resumed_from=plan.checkpoint)
        except OSError:
            if created:  # e.g. a full disk: leave no half-made run folder behind
                shutil.rmtree(plan.path, ignore_errors=True)
            raise
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
    return plan.path


def _claim(run_dir: Path) -> None:
    """Take a new run's folder atomically: its marker is created only if absent (a hard link fails on an existing
    name), so of two runs started into one folder within the same model-loading time only the first trains there."""
    temporary = run_dir / f".{RUN_STATE_FILE}.{os.getpid()}.claim"
    temporary.write_text(json.dumps({"state": RUNNING, **_this_process()}) + "\n")
    try:
        os.link(temporary, run_dir / RUN_STATE_FILE)
    except FileExistsError:
        raise RunDirError(_in_use(run_dir)) from None
    finally:
        temporary.unlink()


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.old-{stamp}")
    suffix = 2
    while target.exists():
        target = path.with_name(f"{path.name}.old-{stamp}-{suffix}")
        suffix += 1
    path.rename(target)
    return target


def mark_run(run_dir: Path, state: str, **details) -> None:
    """Write the run's marker atomically (temporary file, then rename); main process only."""
    if not is_main_process():
        return
    _write_marker(run_dir, {**(read_run_state(run_dir) or {}), "state": state, **_this_process(), **details})


def heartbeat(run_dir: Path) -> None:
    """Refresh the marker's process and time (each logged step): what another host judges a run alive by."""
    marker = read_run_state(run_dir)
    if marker is not None and is_main_process():
        _write_marker(run_dir, {**marker, **_this_process()})


def _write_marker(run_dir: Path, marker: dict) -> None:
    temporary = run_dir / f".{RUN_STATE_FILE}.tmp"
    temporary.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, run_dir / RUN_STATE_FILE)


def _this_process() -> dict:
    """Who writes the marker, and when: what ``_process_alive`` reads back."""
    return {
        "pid": os.getpid(),
        "started": process_start(os.getpid()),
        "host": socket.gethostname(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def close_run(run_dir: Path, interrupted: bool, steps: int) -> None:
    """Mark the run finished, or interrupted (Ctrl-C / SIGTERM) with its last checkpoint to resume from."""
    last = complete_checkpoints(run_dir)
    mark_run(
        run_dir, INTERRUPTED if interrupted else FINISHED, global_step=steps, checkpoint=last[-1].name if last else None
    )


def check_trains_a_step(num_prompts: int | None, config: GRPOConfig, processes: int) -> None:
    """Refuse a run whose data is smaller than one generation batch: TRL would train 0 steps and save an
    untrained adapter.  ``num_prompts`` None (a stream) cannot be checked."""
    generations = config.num_generations
    steps_per_generation = config.steps_per_generation or config.gradient_accumulation_steps
    per_batch = config.per_device_train_batch_size * processes * steps_per_generation // generations
    if num_prompts is None or num_prompts >= per_batch:
        return
    fits = generations * max(1, num_prompts // processes)
    raise ConfigError(
        f"the training data has {num_prompts} prompts, but one step takes {per_batch} (--batch-size "
        f"{config.per_device_train_batch_size} x {processes} process(es) x --gradient-accumulation-steps "
        f"{steps_per_generation} / --num-generations {generations}), so no step would be trained. Use at most "
        f"--batch-size {fits} --gradient-accumulation-steps 1, or more data."
    )


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


# ---- Errors at the end of a run ------------------------------------------------------------------------------
# errno -> what a person does about it; an OSError with one of these is the environment, not a bug.
ENVIRONMENT_ERRNOS = {
    errno.EROFS: "the file system is read-only; choose a writable --output-dir",
    errno.ENOSPC: "the disk is full; free some space or choose another --output-dir",
    errno.EDQUOT: "the disk quota is used up; free some space or choose another --output-dir",
    errno.EACCES: "permission denied; fix the permissions, or choose a folder you can write to with --output-dir",
    errno.EPERM: "operation not permitted; choose a folder you can write to with --output-dir",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another --output-dir",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter --output-dir",
}


# torch's checkpoint writer reports a full disk as RuntimeError("... file write failed"), without an errno.
TORCH_WRITE_FAILED = "file write failed"


def environment_problem(err: OSError | RuntimeError, training: bool = True) -> str | None:
    """One line for an error that the machine causes (read-only, full disk, permissions), else None; a training
    run's line says how to continue it (an evaluation or a preview has no checkpoint to continue)."""
    if isinstance(err, RuntimeError):
        if TORCH_WRITE_FAILED not in str(err):
            return None
        advice, where = ENVIRONMENT_ERRNOS[errno.ENOSPC], " a checkpoint"
    else:
        advice = ENVIRONMENT_ERRNOS.get(err.errno)
        where = f" {err.filename}" if err.filename else ""
    if advice is None:
        return None
    # permissions fail reads too (a model file the user may not read was reported as "cannot write": fault hunt)
    verb = "access" if getattr(err, "errno", None) in (errno.EACCES, errno.EPERM) else "write"
    resume = " Any checkpoint already saved resumes with --resume-from-checkpoint latest." if training else ""
    return f"cannot {verb}{where}: {advice}.{resume}"


def report_failure(err: BaseException, training: bool = True) -> int:
    """The exit status of a run stopped by ``err``, which is not the user's input: 2 with one line for the machine's
    problems (read-only, full disk, permissions), 1 with the traceback in the log for anything else (a bug)."""
    problem = environment_problem(err, training) if isinstance(err, (OSError, RuntimeError)) else None
    if problem is None:
        report_crash(err)
        return 1
    logger.error("%s", problem)
    return 2


def report_crash(err: BaseException) -> None:
    """An unexpected error: its traceback goes to the log files only, the terminal gets one line pointing there."""
    logs = log_file_paths()
    where = f"the traceback is in {logs[0]}" if logs else "no log file was open"
    logger.error("unexpected error %s: %s (%s)", type(err).__name__, err, where, exc_info=err)
