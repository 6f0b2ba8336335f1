"""Reward speed: scoring 10,000 completions with accuracy + length (guarded, as in training), one core.

    taskset -c 0 python bench/bench_rewards.py [--completions 10000] [--group 8]

Completions come in groups of ``--group`` per prompt (TRL's num_generations), sharing the prompt's reference, as
in training.  Three kinds, timed together (``best_s``, the issue-4 goal: under 1 s) and one by one
(``per_kind_best_s``, each scaled to the full count):

* ``number``: "... The answer is 37." against a GSM8K-style reference ending in ``#### 37``;
* ``latex``: "... so the result is \\boxed{\\frac{37}{7}}" against ``\\frac{37}{7}``: math-verify's LaTeX
  parser and sympy, the slow path;
* ``free_text``: sentences against free-text chosen/rejected references (the word-F1 path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KINDS = ("number", "latex", "free_text")


def example(kind: str, i: int, group: int, first_prompt: int) -> tuple[str, str, str]:
    """(completion, chosen, rejected) of completion ``i``; completions of one group share the reference."""
    prompt = first_prompt + i // group
    answer = prompt + 7 + (i % 3 == 0)  # a third of the answers are wrong
    if kind == "number":
        return f"{prompt} + 7 = {answer}. The answer is {answer}.", f"{prompt} + 7\n#### {prompt + 7}", ""
    if kind == "latex":
        return f"Dividing, the result is \\boxed{{\\frac{{{answer}}}{{7}}}}", f"\\frac{{{prompt + 7}}}{{7}}", ""
    return (
        "Paris is the capital and largest city of France. " * 3,
        "The capital of France is Paris, a large city on the Seine.",
        "I do not know which city that is.",
    )


def inputs(count: int, group: int, kinds: tuple[str, ...], first_prompt: int):
    rows = [example(kinds[(i // group) % len(kinds)], i, group, first_prompt) for i in range(count)]
    completions = [[{"role": "assistant", "content": text}] for text, _, _ in rows]
    return completions, {"chosen": [c for _, c, _ in rows], "rejected": [r for _, _, r in rows]}


def best_time(functions, count: int, group: int, kinds: tuple[str, ...], repeats: int) -> float:
    """Best of ``repeats`` timings; every repeat uses new prompts, so no reference is parsed before it is timed."""
    timings = []
    for repeat in range(repeats):
        completions, columns = inputs(count, group, kinds, first_prompt=repeat * count)
        started = time.perf_counter()
        for fn in functions:
            assert len(fn(completions, **columns)) == count
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", type=int, default=10_000)
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (num_generations)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from rewards import build_reward_functions

    functions, _ = build_reward_functions(["accuracy", "length"], "config/reward_config.json")
    per_kind_count = args.completions // len(KINDS)
    per_kind = {
        kind: round(best_time(functions, per_kind_count, args.group, (kind,), args.repeats) * len(KINDS), 3)
        for kind in KINDS
    }
    result = {
        "completions": args.completions,
        "group": args.group,
        "rewards": [f.__name__ for f in functions],
        "best_s": round(best_time(functions, args.completions, args.group, KINDS, args.repeats), 3),
        "per_kind_best_s": per_kind,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
