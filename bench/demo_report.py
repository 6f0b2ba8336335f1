"""Before/after report of the learning demo: ``python bench/demo_report.py DEMO_DIR``.

Reads ``DEMO_DIR/base/eval_results.json`` (base model) and ``DEMO_DIR/trained/eval_results.json`` (adapter),
both greedy on the same held-out prompts, and ``DEMO_DIR/trained/metrics.jsonl`` (training curve).  Prints
accuracy before and after, the paired difference and its standard error, and writes
``DEMO_DIR/learning_report.json`` and ``DEMO_DIR/learning_curves.png``.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

METRIC = "accuracy_reward"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def paired_summary(before: list[float], after: list[float]) -> dict:
    n = len(before)
    diff = [a - b for a, b in zip(after, before, strict=True)]
    se_diff = statistics.stdev(diff) / math.sqrt(n)
    mean_before, mean_after = statistics.fmean(before), statistics.fmean(after)
    return {
        "n": n,
        "accuracy_before": mean_before,
        "accuracy_after": mean_after,
        "se_before": math.sqrt(mean_before * (1 - mean_before) / n),
        "se_after": math.sqrt(mean_after * (1 - mean_after) / n),
        "gain": mean_after - mean_before,
        "se_gain_paired": se_diff,
        "gain_over_se": (mean_after - mean_before) / se_diff if se_diff else math.inf,
        "fixed": sum(d > 0 for d in diff),
        "broken": sum(d < 0 for d in diff),
    }


def plot(demo_dir: Path, summary: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = [json.loads(line) for line in (demo_dir / "trained" / "metrics.jsonl").read_text().splitlines()]
    fig, (curve, bars) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    for key, label in (("rewards/accuracy_reward/mean", "accuracy reward"), ("reward", "total reward")):
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            curve.plot(*zip(*points), marker="o", markersize=3, label=label)
    curve.set_xlabel("optimizer step")
    curve.set_ylabel("mean reward of sampled completions")
    curve.set_title("Training reward (sampled, T = 1.0)")
    curve.grid(alpha=0.3)
    curve.legend()
    values = [summary["accuracy_before"], summary["accuracy_after"]]
    errors = [1.96 * summary["se_before"], 1.96 * summary["se_after"]]
    bars.bar(["base model", "after GRPO"], values, yerr=errors, capsize=6, color=["#999999", "#2a7ab9"])
    for x, v in enumerate(values):
        bars.text(x, v + errors[x] + 0.02, f"{v:.1%}", ha="center")
    bars.set_ylim(0, 1.15)
    bars.set_ylabel("held-out accuracy (greedy)")
    bars.set_title(f"{summary['n']} held-out prompts, 95% CI")
    fig.tight_layout()
    out = demo_dir / "learning_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str]) -> int:
    demo_dir = Path(argv[0])
    base, trained = (load(demo_dir / part / "eval_results.json") for part in ("base", "trained"))
    if base["prompts"] != trained["prompts"]:
        print("ERROR: the two evaluations used different prompts", file=sys.stderr)
        return 2
    summary = paired_summary(base["scores"][METRIC], trained["scores"][METRIC])
    summary["plot"] = str(plot(demo_dir, summary))
    (demo_dir / "learning_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"held-out accuracy ({summary['n']} prompts, greedy): {summary['accuracy_before']:.1%} -> "
        f"{summary['accuracy_after']:.1%}; gain {summary['gain']:+.1%} "
        f"(paired SE {summary['se_gain_paired']:.1%}, {summary['gain_over_se']:.1f} SE); "
        f"fixed {summary['fixed']}, broken {summary['broken']}"
    )
    print(f"plot: {summary['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
