"""Run benchmark jobs over the GPUs of one machine, one job per GPU at a time, inside a time budget.

    python bench/gpu_queue.py JOBS --deadline 480 --logs $OUT/logs

JOBS holds one job per line, ``name<TAB>estimated seconds<TAB>shell command`` (``#`` starts a comment), in
order of priority.  Each free GPU takes the next job whose estimate still fits before the deadline (the others
are skipped and listed), runs it with ``CUDA_VISIBLE_DEVICES`` set to that GPU and a time limit of twice
its estimate (never past the deadline), and writes its output to ``LOGS/name.log``.  A device call has a
hard limit, so rows that would not finish are left out rather than cut off.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from pathlib import Path


def read_jobs(path: Path) -> list[tuple[str, float, str]]:
    jobs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, estimate, command = line.split("\t", 2)
            jobs.append((name, float(estimate), command))
    return jobs


def gpu_count() -> int:
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return max(1, sum(line.startswith("GPU ") for line in listed.splitlines()))


class Queue:
    """Jobs in priority order, handed to GPU workers while their estimates fit the time left."""

    def __init__(self, jobs, deadline: float, logs: Path):
        self.jobs, self.deadline, self.logs = list(jobs), deadline, logs
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.started)

    def next_job(self):
        with self.lock:
            for index, (name, estimate, command) in enumerate(self.jobs):
                if estimate <= self.left():
                    del self.jobs[index]
                    return name, estimate, command
            return None

    def report(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.0f} s] {text}"
        print(line, flush=True)
        with self.lock, (self.logs / "queue.log").open("a") as handle:
            handle.write(line + "\n")

    def work(self, gpu: int) -> None:
        while (job := self.next_job()) is not None:
            name, estimate, command = job
            limit = max(1, int(min(2 * estimate, self.left())))
            self.report(f"GPU {gpu}: {name} (estimate {estimate:.0f} s, limit {limit} s)")
            begun = time.monotonic()
            with (self.logs / f"{name}.log").open("w") as log:
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
                code = subprocess.run(
                    ["timeout", str(limit), "bash", "-c", command], stdout=log, stderr=subprocess.STDOUT, env=env
                ).returncode
            self.report(f"GPU {gpu}: {name} ended with code {code} after {time.monotonic() - begun:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", type=Path)
    parser.add_argument("--deadline", type=float, required=True, help="seconds from now")
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--gpus", type=int, help="default: all that nvidia-smi lists")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    queue = Queue(read_jobs(args.jobs), args.deadline, args.logs)
    workers = [threading.Thread(target=queue.work, args=(gpu,)) for gpu in range(args.gpus or gpu_count())]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for name, estimate, _ in queue.jobs:
        queue.report(f"skipped {name}: estimate {estimate:.0f} s did not fit")


if __name__ == "__main__":
    main()
