"""Write examples/demo_arithmetic.jsonl: the learning demo's addition questions (see docs/learning.md).

Half the questions add two one-digit numbers, half add a one-digit number to a number from 10 to 29; the
base SmolLM2-135M-Instruct answers about 40% of this mix correctly with greedy decoding.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ROWS = 3000
SEED = 1234


def rows(count: int = ROWS, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        a = rng.randint(1, 9) if i % 2 else rng.randint(10, 29)
        b = rng.randint(1, 9)
        out.append(
            {
                "prompt": f"What is {a} + {b}? Answer with a number.",
                "chosen": str(a + b),
                "rejected": str(a + b + rng.choice((-1, 1))),
            }
        )
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("demo_arithmetic.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()), encoding="utf-8")
    print(f"wrote {path}")
