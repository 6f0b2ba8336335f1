"""Run benchmark jobs over the GPUs of one machine, inside a time budget.

    python bench/gpu_queue.py JOBS --deadline 480 --logs $OUT/logs

JOBS holds one job per line, ``name<TAB>estimated seconds<TAB>shell command`` (``#`` starts a comment), in
order of priority; a name ending in ``@N`` (``ddp4@4``) needs N GPUs at once, otherwise one.  Jobs start in
their order: the next job whose estimate still fits before the deadline waits until enough GPUs are free
(the others are skipped and listed), then runs with ``CUDA_VISIBLE_DEVICES`` set to its GPUs and a time limit
of twice its estimate (never past the deadline), its output in ``LOGS/name.log``.  A device call has a hard
limit, so rows that would not finish are left out rather than cut off.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Job:
    name: str
    estimate: float
    command: str
    gpus: int = 1


def read_jobs(path: Path) -> list[Job]:
    jobs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, estimate, command = line.split("\t", 2)
            name, _, gpus = name.partition("@")
            jobs.append(Job(name, float(estimate), command, int(gpus or 1)))
    return jobs


def gpu_count() -> int:
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return max(1, sum(line.startswith("GPU ") for line in listed.splitlines()))


class Queue:
    """Jobs in priority order, each started on the GPUs it needs once they are free and its estimate fits."""

    def __init__(self, jobs: list[Job], gpus: int, deadline: float, logs: Path):
        self.jobs, self.deadline, self.logs = list(jobs), deadline, logs
        self.free = list(range(gpus))
        self.changed = threading.Condition()
        self.started = time.monotonic()
        self.skipped: list[Job] = []

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.started)

    def report(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.0f} s] {text}"
        print(line, flush=True)
        with (self.logs / "queue.log").open("a") as handle:
            handle.write(line + "\n")

    def run_all(self) -> None:
        threads, total = [], len(self.free)
        for job in self.jobs:
            with self.changed:
                self.changed.wait_for(
                    lambda job=job: len(self.free) >= job.gpus or job.gpus > total or job.estimate > self.left()
                )
                if job.estimate > self.left() or job.gpus > total:
                    self.skipped.append(job)
                    continue
                gpus, self.free = self.free[: job.gpus], self.free[job.gpus :]
            thread = threading.Thread(target=self.run_job, args=(job, gpus))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        for job in self.skipped:
            self.report(f"skipped {job.name}: estimate {job.estimate:.0f} s did not fit")

    def run_job(self, job: Job, gpus: list[int]) -> None:
        limit = max(1, int(min(2 * job.estimate, self.left())))
        visible = ",".join(map(str, gpus))
        self.report(f"GPU {visible}: {job.name} (estimate {job.estimate:.0f} s, limit {limit} s)")
        begun = time.monotonic()
        with (self.logs / f"{job.name}.log").open("w") as log:
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible}
            code = subprocess.run(
                ["timeout", str(limit), "bash", "-c", job.command], stdout=log, stderr=subprocess.STDOUT, env=env
            ).returncode
        self.report(f"GPU {visible}: {job.name} ended with code {code} after {time.monotonic() - begun:.0f} s")
        with self.changed:
            self.free = sorted(self.free + gpus)
            self.changed.notify_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", type=Path)
    parser.add_argument("--deadline", type=float, required=True, help="seconds from now")
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--gpus", type=int, help="default: all that nvidia-smi lists")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    Queue(read_jobs(args.jobs), args.gpus or gpu_count(), args.deadline, args.logs).run_all()


if __name__ == "__main__":
    main()
