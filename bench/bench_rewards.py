"""Reward speed: scoring 10,000 completions with accuracy + length (guarded, as in training), one core.

    taskset -c 0 python bench/bench_rewards.py [--completions 10000]

Half the completions are numeric answers against numeric references, half free text against free-text
chosen/rejected references (the F1 path), so both branches of the accuracy reward are timed.
Goal (issue 4): under 1 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def inputs(count: int):
    completions, chosen, rejected = [], [], []
    for i in range(count):
        if i % 2:
            completions.append(
                [{"role": "assistant", "content": f"Let me compute: {i} + 7 = {i + 7}. The answer is {i + 7}."}]
            )
            chosen.append(str(i + 7))
            rejected.append(str(i + 8))
        else:
            completions.append(
                [{"role": "assistant", "content": "Paris is the capital and largest city of France. " * 3}]
            )
            chosen.append("The capital of France is Paris, a large city on the Seine.")
            rejected.append("I do not know which city that is.")
    return completions, {"chosen": chosen, "rejected": rejected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from rewards import build_reward_functions

    functions, _ = build_reward_functions(["accuracy", "length"], "config/reward_config.json")
    completions, columns = inputs(args.completions)
    timings = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for fn in functions:
            scores = fn(completions, **columns)
            assert len(scores) == args.completions
        timings.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "completions": args.completions,
                "rewards": [f.__name__ for f in functions],
                "best_s": round(min(timings), 3),
                "median_s": round(sorted(timings)[len(timings) // 2], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
