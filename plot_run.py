#!/usr/bin/env python
"""Plot a run's training curves: ``python plot_run.py RUN_DIR`` writes ``RUN_DIR/training_curves.png``.

Panels (only those with data): reward per reward function, reward spread within groups, KL, completion
length and loss, each against the optimizer step (a reward model's run: loss and pairwise accuracy).  Reads
``metrics.jsonl`` (written during training), or the ``trainer_state.json`` of the newest checkpoint for runs made
without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PLOT_FILE = "training_curves.png"
PANELS = [
    (
        "Reward (weighted sum and per function)",
        lambda k: k == "reward" or (k.startswith("rewards/") and k.endswith("/mean")),
    ),
    ("Reward std within groups", lambda k: k == "reward_std"),
    ("KL to the base model", lambda k: k == "kl"),
    ("Completion length (tokens)", lambda k: k in ("completions/mean_length", "completions/max_length")),
    ("Loss", lambda k: k == "loss"),
    ("Held-out reward", lambda k: k == "eval_reward"),
    ("Pairwise accuracy (reward model)", lambda k: k in ("accuracy", "eval_accuracy")),
]


def read_history(run_dir: Path) -> list[dict]:
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]))
    if not states:
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl and no checkpoint-*/trainer_state.json to plot")
    return json.loads(states[-1].read_text())["log_history"]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the training-curves PNG for ``run_dir``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    history = read_history(run_dir)
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)):
                series.setdefault(key, []).append((entry["step"], value))
    panels = [(title, sorted(k for k in series if wanted(k))) for title, wanted in PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        raise ValueError(f"{run_dir}: the history has no reward, KL, length or loss values to plot")
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.2 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            steps, values = zip(*series[key])
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.remove()
    fig.suptitle(f"GRPO run: {run_dir.name}")
    fig.tight_layout()
    out = Path(out) if out else run_dir / PLOT_FILE
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="훈련 곡선 그리기 (reward, KL, 길이, loss)")
    parser.add_argument("run_dir", help="출력 디렉토리 (metrics.jsonl 또는 checkpoint-* 가 있는 곳)")
    parser.add_argument("--out", help="PNG 경로 (기본: RUN_DIR/training_curves.png)")
    args = parser.parse_args(argv)
    try:
        print(plot_run(args.run_dir, args.out))
    except (FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
