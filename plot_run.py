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
    """The logged entries: ``metrics.jsonl``, else the newest checkpoint's ``log_history``."""
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        return read_metrics(metrics)
    states = [p for p in run_dir.glob("checkpoint-*/trainer_state.json") if p.parent.name.split("-")[-1].isdigit()]
    if not states:
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl and no checkpoint-*/trainer_state.json to plot")
    newest = max(states, key=lambda p: int(p.parent.name.split("-")[-1]))
    try:
        history = json.loads(newest.read_text(encoding="utf-8")).get("log_history")
    except (ValueError, AttributeError):
        history = None
    if not isinstance(history, list):
        raise ValueError(f"{newest}: not a trainer state with a log_history list")
    return [entry for entry in history if isinstance(entry, dict) and isinstance(entry.get("step"), int)]


def metrics_entry(line: str) -> dict | None:
    """One line of ``metrics.jsonl`` as its entry (a JSON object with an integer ``step``), or None."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("step"), int) else None


def read_metrics(path: Path) -> list[dict]:
    """``metrics.jsonl``'s entries; a last line cut short (a run killed while writing it) is left out, any other line
    that is not an entry with its step is an error naming the line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry = metrics_entry(line)
        if entry is not None:
            entries.append(entry)
        elif number < len(lines):
            raise ValueError(f'{path}:{number}: not a metrics entry (a JSON object with its "step"): {line[:80]}')
    return entries


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
    if out.is_dir():  # matplotlib would write <out>.png beside it and this would name the folder
        out = out / PLOT_FILE
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
    except (OSError, ValueError) as err:  # a missing, unreadable or unwritable file, bad content
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
