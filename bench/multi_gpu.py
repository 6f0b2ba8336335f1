"""One row of the several-GPU table: the real CLI on N GPUs, timed from its own metrics, memory from nvidia-smi.

    python bench/multi_gpu.py --name ddp2 --gpus 2 --launch ddp --model /tmp/qwen15 --out $OUT/multi.jsonl \
        [--interrupt-at 6] -- --backend unsloth --max-steps 16 ...

``--launch`` is ``python`` (one GPU, as users run it), or an accelerate config in config/accelerate/ (``ddp``,
``fsdp2``, ``zero3``) started with ``accelerate launch --num_processes N``.  Everything after ``--`` goes to
train_grpo.py.  The row reports completion tokens/s over the generation rounds after the first (warm-up),
with its spread over rounds; seconds per optimizer step; the most memory nvidia-smi saw on each GPU; and what
the run folder holds (one log header, one metrics line per step, one adapter: only the main process writes).
With ``--interrupt-at K`` one rank (the last) is sent SIGTERM in step K+1, then the same command runs again
with ``--resume-from-checkpoint latest``: the row says where the first run stopped and where the second
ended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


class MemoryWatch:
    """The most memory nvidia-smi reports on each visible GPU while the row runs, and the most host memory in
    use above what was in use at the start (sampled every 0.5 s)."""

    def __init__(self):
        self.peak: dict[str, int] = {}
        self.host_start = self.host_peak = psutil.virtual_memory().used
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        query = ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"]
        if visible:
            query += ["-i", visible]
        while not self.stopped.wait(0.5):
            self.host_peak = max(self.host_peak, psutil.virtual_memory().used)
            if not shutil.which("nvidia-smi"):
                continue
            lines = subprocess.run(query, capture_output=True, text=True, check=False).stdout.splitlines()
            for line in lines:
                index, used = (part.strip() for part in line.split(","))
                self.peak[index] = max(self.peak.get(index, 0), int(used))

    def __enter__(self) -> MemoryWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()


def command(args, extra: list[str]) -> list[str]:
    script = [str(ROOT / "train_grpo.py"), "--model", args.model, "--output-dir", str(args.run_dir), *extra]
    if args.launch == "python":
        return [sys.executable, *script]
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "config" / "accelerate" / f"{args.launch}.yaml"),
        "--num_processes", str(args.gpus), "--main_process_port", str(args.port),
        *script,
    ]  # fmt: skip


def training_processes(pid: int) -> list[psutil.Process]:
    """The train_grpo.py processes under ``pid`` (itself included), not the launcher that names the script."""
    found = []
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            # the script is the interpreter's first argument that is not a flag (`python -m torch.distributed.run
            # ... train_grpo.py` is the launcher)
            script = next((part for part in process.cmdline()[1:] if not part.startswith("-")), "")
            if script.endswith("train_grpo.py"):
                found.append(process)
    return found


def run(args, extra: list[str], log: Path, env: dict) -> tuple[int | str, float]:
    """The launch's exit code, or ``"time limit"`` where it outlived ``--time-limit``: then every process of
    train_grpo.py has printed its threads' stacks into the log 15 s before (bench/stackdump) and is asked again
    (SIGUSR1), and the launch is stopped, so the row still reports its memory and steps and says where the
    processes were."""
    begun = time.monotonic()
    with log.open("a") as handle:
        launch = subprocess.Popen(command(args, extra), stdout=handle, stderr=subprocess.STDOUT, env=env)
        try:
            return launch.wait(timeout=args.time_limit), time.monotonic() - begun
        except subprocess.TimeoutExpired:
            trainers = training_processes(launch.pid)
            for process in trainers:
                process.send_signal(signal.SIGUSR1)
            time.sleep(10)
            for process in [psutil.Process(launch.pid), *trainers]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            launch.wait()
            return "time limit", time.monotonic() - begun


def throughput(metrics: list[dict], completions_per_step: int, steps_per_round: int, length: int) -> dict:
    """Completion tokens/s per generation round after the first, from TRL's per-step ``step_time``."""
    rounds: dict[int, list[dict]] = {}
    for entry in metrics:
        if "step_time" in entry:  # the last line is the run's summary
            rounds.setdefault((entry["step"] - 1) // steps_per_round, []).append(entry)
    rates = []
    for index in sorted(rounds)[1:]:
        entries = rounds[index]
        # TRL logs the completion lengths on the step that generated the round
        mean_length = next((e["completions/mean_length"] for e in entries if "completions/mean_length" in e), length)
        tokens = mean_length * completions_per_step * len(entries)
        rates.append(tokens / sum(e["step_time"] for e in entries))
    if not rates:
        return {}
    step_times = [e["step_time"] for index in sorted(rounds)[1:] for e in rounds[index]]
    return {
        "completion_tok_s": round(statistics.mean(rates), 1),
        "tok_s_rounds": [round(r, 1) for r in rates],
        "s_per_step": round(statistics.mean(step_times), 2),
        "timed_rounds": len(rates),
    }


def timings(folder: Path, steps_per_round: int) -> dict:
    """Per rank, TRL's timings (bench/stackdump, ``--profile``) summed over the timed rounds and divided by their
    number: seconds per round in generate, each reward, log-probabilities and the loss."""
    per_rank = {}
    for path in sorted(folder.glob("rank*.jsonl")):
        totals: dict[str, float] = {}
        rounds = set()
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            round_index = entry["step"] // steps_per_round  # TRL's step counter before the optimizer step
            if round_index >= 1:
                rounds.add(round_index)
                name = entry["name"].split(".", 1)[-1]
                totals[name] = totals.get(name, 0.0) + entry["s"]
        per_rank[path.stem] = {name: round(total / max(len(rounds), 1), 3) for name, total in sorted(totals.items())}
    return per_rank


def writers(run_dir: Path, steps: int) -> dict:
    """What only the main process should have written, counted."""
    log = run_dir / "grpo_training.log"
    metrics = run_dir / "metrics.jsonl"
    return {
        "log_headers": log.read_text(errors="replace").count("run directory:") if log.is_file() else 0,
        "metrics_lines": len(metrics.read_text().splitlines()) if metrics.is_file() else 0,
        "steps": steps,
        "adapters": len(list(run_dir.glob("adapter_model.safetensors"))),
        "files": sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--gpus", type=int, required=True)
    parser.add_argument("--launch", default="python", help="python, or a config/accelerate/<name>.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per row")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/runs"))
    parser.add_argument("--port", type=int, default=29500)
    parser.add_argument("--completions-per-gpu-step", type=int, default=16)
    parser.add_argument("--steps-per-round", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=128)
    parser.add_argument(
        "--interrupt-at",
        type=int,
        help="SIGTERM one rank in this step + 1, then resume (a step that generates: a multiple of --steps-per-round)",
    )
    parser.add_argument(
        "--time-limit", type=float, help="seconds; then print every process's stacks, stop it, report the row"
    )
    parser.add_argument("--profile", action="store_true", help="every rank records TRL's timings (bench/stackdump)")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then train_grpo.py's flags")
    args = parser.parse_args()
    extra = [a for a in args.extra if a != "--"]
    args.run_dir = args.runs / args.name
    log = args.runs / f"{args.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # A machine kept warm between device calls still holds the last call's scratch runs: the CLI rightly refuses
    # a finished run's folder, and the row must not then report that old run's metrics.
    profile = args.runs / f"{args.name}.profile"
    for old in (args.run_dir, profile):
        if old.exists():
            shutil.rmtree(old)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{os.environ.get('PYTHONPATH', '')}"}
    if args.time_limit or args.profile:
        env["PYTHONPATH"] = f"{ROOT / 'bench' / 'stackdump'}:{env['PYTHONPATH']}"
    if args.time_limit:
        env["GRPO_DUMP_STACKS_AFTER"] = str(max(1.0, args.time_limit - 15))
    if args.profile:
        env["GRPO_PROFILE_DIR"] = str(profile)
    row: dict = {"name": args.name, "gpus": args.gpus, "launch": args.launch, "flags": " ".join(extra)}
    with MemoryWatch() as memory:
        if args.interrupt_at is not None:
            stop = {"GRPO_SIGTERM_AT_STEP": str(args.interrupt_at), "GRPO_SIGTERM_RANK": str(args.gpus - 1)}
            row["first_exit"], row["first_s"] = run(args, extra, log, {**env, **stop})
            state = args.run_dir / "run_state.json"
            row["first_state"] = json.loads(state.read_text()) if state.is_file() else None
            row["checkpoints_after_first"] = sorted(p.name for p in args.run_dir.glob("checkpoint-*"))
            extra = [*extra, "--resume-from-checkpoint", "latest"]
        row["exit"], row["wall_s"] = run(args, extra, log, env)
    row["peak_mib_per_gpu"] = memory.peak
    row["host_mib_max_above_start"] = (memory.host_peak - memory.host_start) // 2**20
    metrics_file = args.run_dir / "metrics.jsonl"
    metrics = [json.loads(line) for line in metrics_file.read_text().splitlines()] if metrics_file.is_file() else []
    metrics = [entry for entry in metrics if "step_time" in entry]
    per_step = args.completions_per_gpu_step * args.gpus
    row.update(throughput(metrics, per_step, args.steps_per_round, args.completion_length))
    if args.profile:
        row["seconds_per_round"] = timings(profile, args.steps_per_round)
    row["writers"] = writers(args.run_dir, metrics[-1]["step"] if metrics else 0)
    text = log.read_text(errors="replace")
    lines = [line.split(" INFO ", 1)[-1].strip() for line in text.splitlines() if "settings:" not in line]
    row["resumed_from"] = [line for line in lines if "resuming from" in line or "run directory:" in line]
    row["backend_lines"] = [line for line in lines if "backend" in line or "generation batch" in line][:6]
    row["errors"] = [line for line in text.splitlines() if "ERROR" in line or "Error" in line][-5:]
    print(json.dumps(row))
    with args.out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
