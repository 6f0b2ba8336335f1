"""Put on PYTHONPATH by bench/multi_gpu.py (--time-limit, --profile) for every Python process of a row (launcher
and ranks).

* ``GRPO_DUMP_STACKS_AFTER=S``: the process prints its threads' stacks to stderr once, S seconds after it started,
  and runs on. A rank stuck in a collective cannot be asked from outside reliably (the launcher's process tree,
  signals taken by other threads); a timer armed inside each interpreter at start-up needs neither.
* ``GRPO_PROFILE_DIR=D``: every rank appends TRL's own timings (``trl.extras.profiling``: generate, each reward,
  log-probabilities, the loss) to ``D/rank<R>.jsonl``. TRL sends them to W&B / MLflow / Trackio only, and from the
  main process only; comparing ranks is what shows where several processes lose time. trl is patched when it is
  first imported, so the import order of the run (Unsloth first) is left as it is.
"""

import faulthandler
import importlib.abc
import importlib.machinery
import json
import os
import sys
import time

if os.environ.get("GRPO_DUMP_STACKS_AFTER"):
    faulthandler.dump_traceback_later(float(os.environ["GRPO_DUMP_STACKS_AFTER"]), exit=False)


def _record_timings(module) -> None:
    """Wrap ProfilingContext.__exit__ so that every rank writes each timing it takes."""
    context = module.ProfilingContext
    inner = context.__exit__
    path = os.path.join(os.environ["GRPO_PROFILE_DIR"], f"rank{os.environ.get('RANK', '0')}.jsonl")

    def timed_exit(self, *exc):
        if self._start_time is not None:
            seconds = time.perf_counter() - self._start_time
            with open(path, "a") as handle:
                handle.write(json.dumps({"name": self.name, "step": self.step, "s": round(seconds, 4)}) + "\n")
        return inner(self, *exc)

    context.__exit__ = timed_exit


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: lets the normal finder load trl.extras.profiling, then patches the module."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "trl.extras.profiling":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _record_timings(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("GRPO_PROFILE_DIR"):
    os.makedirs(os.environ["GRPO_PROFILE_DIR"], exist_ok=True)
    sys.meta_path.insert(0, _PatchOnImport())
