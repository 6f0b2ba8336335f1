"""Write examples/reward_pairs.jsonl: generated preference pairs for the reward-model demo (docs/reward_model.md).

Each row asks "What is a + b? Answer with a number." for a distinct (a, b), a in 1..99 and b in 1..19, so a
held-out row's prompt is never seen in training.  ``chosen`` is a short, correct answer; ``rejected`` is, in
equal shares, one of four kinds (column ``kind``):

* ``wrong``: the same short form with a wrong sum (off by 1, 2 or 10);
* ``rambling``: the correct answer followed by one or two off-topic sentences;
* ``wrong_rambling``: a wrong sum followed by off-topic sentences;
* ``evasive``: no number at all.

So the signal is learnable in two parts: stop after the answer (easy to see) and get the sum right (harder).
The column ``total`` holds the true sum, for the demo's correctness check.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

ROWS = 1200
SEED = 2024
KINDS = ("wrong", "rambling", "wrong_rambling", "evasive")
SHORT_FORMS = ("{a} + {b} = {s}", "{s}", "The answer is {s}.", "{a} + {b} = {s}.")
FILLER = (
    "This is a classic example of how math can be used in everyday life.",
    "Addition is one of the four basic operations of arithmetic.",
    "Numbers help us count, measure and compare things around us.",
    "Let me know if you have any other questions about math!",
    "Math can be fun when you practice it every day.",
    "In summary, adding numbers is an important skill for students.",
    "You can check the result by counting on your fingers.",
    "The history of arithmetic goes back thousands of years.",
)
EVASIVE = (
    "I'm not sure what the answer is.",
    "Addition means putting two numbers together.",
    "That is a good question about numbers.",
    "You should try to work it out yourself with a calculator.",
    "Let me think about that. Numbers can be added in many ways.",
)


def wrong_sum(s: int, rng: random.Random) -> int:
    return max(0, s + rng.choice((-10, -2, -1, 1, 2, 10)))


def rejected(kind: str, a: int, b: int, form: str, rng: random.Random) -> str:
    s = a + b
    if kind == "evasive":
        return rng.choice(EVASIVE)
    shown = s if kind == "rambling" else wrong_sum(s, rng)
    answer = form.format(a=a, b=b, s=shown)
    if kind == "wrong":
        return answer
    return answer + "\n\n" + " ".join(rng.sample(FILLER, rng.randint(1, 2)))


def rows(count: int = ROWS, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    pairs = rng.sample(list(itertools.product(range(1, 100), range(1, 20))), count)
    out = []
    for i, (a, b) in enumerate(pairs):
        kind = KINDS[i % len(KINDS)]
        form = rng.choice(SHORT_FORMS)
        out.append(
            {
                "prompt": f"What is {a} + {b}? Answer with a number.",
                "chosen": form.format(a=a, b=b, s=a + b),
                "rejected": rejected(kind, a, b, form, rng),
                "kind": kind,
                "total": str(a + b),
            }
        )
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("reward_pairs.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()), encoding="utf-8")
    print(f"wrote {path}")
