#!/usr/bin/env python
"""GRPO with a trained reward model as the reward, evaluated before and after on held-out prompts.

    python train_reward_model.py --config config/reward_model_demo.json --output-dir DEMO/reward_model
    python examples/reward_model_demo.py --reward-model DEMO/reward_model --output-dir DEMO/grpo

The GRPO run reads the reward model's data settings (dataset, seed, eval_samples) from its ``run_config.json``,
so its held-out prompts are the reward model's held-out pairs: prompts neither model trained on.  Greedy
completions of those prompts are scored by the reward model before and after GRPO (paired), together with two
checks the reward model never sees: whether the last number is the true sum (column ``total``) and the length.
Writes ``report.json`` and ``report.md`` into the output directory (see docs/reward_model.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import build_config  # noqa: E402 - after the repository root is on the path
from rewards import completion_text  # noqa: E402

logger = logging.getLogger("reward_model_demo")

DEFAULT_CONFIG = ROOT / "config" / "reward_model_demo_grpo.json"
SPLIT_KEYS = ("dataset_name", "seed", "eval_samples")  # what decides the held-out rows
SHOWN_EXAMPLES = 6
INTEGER = re.compile(r"-?\d+")


def sum_correct(completions: list, total: list[str], **kwargs: Any) -> list[float]:
    """1.0 when the completion's last number is the true sum, the column ``total`` (a check, weight 0)."""
    last = [INTEGER.findall(completion_text(c))[-1:] for c in completions]
    return [float(found == [t]) for found, t in zip(last, total)]


def word_count(completions: list, **kwargs: Any) -> list[float]:
    """Words in the completion (a check, weighted 0 in training)."""
    return [float(len(completion_text(c).split())) for c in completions]


def split_settings(reward_model_dir: Path) -> dict[str, Any]:
    """The reward model run's dataset, seed and eval_samples, so that both runs hold out the same rows."""
    run_config = json.loads((reward_model_dir / "run_config.json").read_text(encoding="utf-8"))
    return {key: run_config[key] for key in SPLIT_KEYS}


def paired(before: list[float], after: list[float]) -> dict[str, float]:
    """Means before and after with their standard errors, and the mean paired difference with its own."""
    diffs = [a - b for a, b in zip(after, before)]
    n = len(diffs)

    def stderr(values: list[float]) -> float:
        return statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan

    return {
        "n": n,
        "before": statistics.fmean(before),
        "before_se": stderr(before),
        "after": statistics.fmean(after),
        "after_se": stderr(after),
        "gain": statistics.fmean(diffs),
        "gain_se": stderr(diffs),
    }


def heldout_by_kind(reward_model_dir: Path, heldout) -> dict[str, dict[str, float]]:
    """The reward model's held-out pairwise accuracy per ``kind`` of rejected answer (and over all)."""
    from reward_model import pairwise_accuracy

    scores = json.loads((reward_model_dir / "reward_model.json").read_text(encoding="utf-8"))["heldout_scores"]
    kinds = list(heldout["kind"]) if "kind" in heldout.column_names else ["all"] * len(heldout)
    if len(kinds) != len(scores["chosen"]):
        raise ValueError("the reward model's held-out pairs are not this run's held-out prompts")
    table = {"all": pairwise_accuracy(scores["chosen"], scores["rejected"])}
    for kind in sorted(set(kinds)):
        rows = [i for i, k in enumerate(kinds) if k == kind]
        table[kind] = pairwise_accuracy([scores["chosen"][i] for i in rows], [scores["rejected"][i] for i in rows])
    return table


def run(reward_model_dir: Path, output_dir: Path, config_file: Path) -> dict[str, Any]:
    """Evaluate the base model, train GRPO on the reward model's score, evaluate again; the report."""
    from grpo_trainer import GRPOTrainer
    from reward_model import get_reward_model_reward
    from run_utils import setup_logging
    from train_grpo import load_data

    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(output_dir)
    config = build_config(
        config_file=str(config_file), overrides={**split_settings(reward_model_dir), "output_dir": str(output_dir)}
    )
    train_set, heldout = load_data(config, eval_only=False)
    reward = get_reward_model_reward(reward_model_dir, batch_size=config.per_device_eval_batch_size)
    # the reward model's score trains; the two checks only watch (weights given with the trainer's own rewards: a
    # config's reward_weights count its reward_functions, and this config names none)
    trainer = GRPOTrainer(config, reward_functions=[reward, sum_correct, word_count], reward_weights=[1.0, 0.0, 0.0])
    trainer.load_model()
    before = trainer.evaluate(heldout, write=False)
    summary = trainer.train(train_set)
    after = trainer.evaluate(heldout)
    trainer.save_model(output_dir)
    report = {
        "reward_model": str(reward_model_dir),
        "reward_model_heldout_accuracy": heldout_by_kind(reward_model_dir, heldout),
        "grpo_steps": summary["steps"],
        "grpo_seconds": summary["seconds"],
        "heldout": {name: paired(before["scores"][name], after["scores"][name]) for name in before["scores"]},
        "examples": [
            {"prompt": p, "before": b, "after": a}
            for p, b, a in list(zip(before["prompts"], before["completions"], after["completions"]))[:SHOWN_EXAMPLES]
        ],
    }
    (output_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = report_markdown(report)
    (output_dir / "report.md").write_text(markdown, encoding="utf-8")
    logger.info("report written to %s:\n%s", output_dir / "report.md", markdown)
    return report


def report_markdown(report: dict[str, Any]) -> str:
    rm = report["reward_model_heldout_accuracy"]
    lines = [
        "| reward model, held-out pairs | pairs | chosen scored higher |",
        "| --- | ---: | ---: |",
        *(f"| {kind} | {s['n']} | {100 * s['accuracy']:.1f}% (SE {100 * s['stderr']:.1f}) |" for kind, s in rm.items()),
        "",
        f"GRPO: {report['grpo_steps']} steps in {report['grpo_seconds']} s.",
        "",
        "| held-out prompts, greedy | before GRPO | after GRPO | paired gain |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, s in report["heldout"].items():
        lines.append(
            f"| {name} (n={s['n']}) | {s['before']:.3f} (SE {s['before_se']:.3f}) | {s['after']:.3f} "
            f"(SE {s['after_se']:.3f}) | {s['gain']:+.3f} (SE {s['gain_se']:.3f}) |"
        )
    lines += ["", "| prompt | before | after |", "| --- | --- | --- |"]
    for example in report["examples"]:
        cells = [example[key].replace("\n", " ").replace("|", "/")[:90] for key in ("prompt", "before", "after")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="보상 모델을 보상으로 GRPO 훈련 전후를 떼어 둔 프롬프트로 비교")
    parser.add_argument("--reward-model", required=True, type=Path, help="train_reward_model.py 의 출력 폴더")
    parser.add_argument("--output-dir", required=True, type=Path, help="GRPO 실행과 보고서를 둘 폴더")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="GRPO 설정 파일 (JSON)")
    args = parser.parse_args(argv)
    run(args.reward_model, args.output_dir, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
