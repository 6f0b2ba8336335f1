"""Conversion speed: a 60,000-row local file in the UltraFeedback schema into the GRPO schema.

    python bench/bench_data.py [--rows 60000] [--format jsonl|parquet]

Writes the file once under /tmp (not timed), then times ``load_grpo_dataset`` on it, cache disabled so that
every run converts from scratch.  Goal (issue 3): at most 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def ultrafeedback_row(i: int) -> dict:
    prompt = f"Question {i}: explain why the sky is blue in {i % 7 + 2} sentences, with an example."
    return {
        "prompt": prompt,
        "prompt_id": f"{i:08x}",
        "chosen": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": "Rayleigh scattering makes short wavelengths scatter more. " * 8},
        ],
        "rejected": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": "Because it reflects the ocean. " * 4},
        ],
        "messages": [{"role": "user", "content": prompt}],
        "score_chosen": 8.5,
        "score_rejected": 4.0,
    }


def write_file(rows: int, fmt: str) -> Path:
    path = Path(f"/tmp/grpo-bench-ultrafeedback-{rows}.{fmt}")
    if path.exists():
        return path
    data = [ultrafeedback_row(i) for i in range(rows)]
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in data) + "\n")
    else:
        from datasets import Dataset

        Dataset.from_list(data).to_parquet(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    args = parser.parse_args()
    import datasets

    from data_loader import load_grpo_dataset

    datasets.disable_caching()
    path = write_file(args.rows, args.format)
    started = time.perf_counter()
    dataset = load_grpo_dataset("ultrafeedback", dataset_path=str(path))
    seconds = time.perf_counter() - started
    assert len(dataset) == args.rows and dataset[0]["chosen"].startswith("Rayleigh")
    print(
        json.dumps(
            {
                "rows": args.rows,
                "format": args.format,
                "seconds": round(seconds, 2),
                "rows_per_s": round(args.rows / seconds),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
