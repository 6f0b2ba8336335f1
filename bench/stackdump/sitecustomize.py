"""Put on PYTHONPATH by bench/multi_gpu.py --time-limit: every Python process of the row (launcher and ranks)
prints its threads' stacks to stderr once, GRPO_DUMP_STACKS_AFTER seconds after it started, and runs on.

A rank stuck in a collective cannot be asked from outside reliably (the launcher's process tree, signals
taken by other threads); a timer armed inside each interpreter at start-up needs neither.
"""

import faulthandler
import os

if os.environ.get("GRPO_DUMP_STACKS_AFTER"):
    faulthandler.dump_traceback_later(float(os.environ["GRPO_DUMP_STACKS_AFTER"]), exit=False)
