"""--eval-only scores rows the run never trained on, with the run's own rewards unless flags say otherwise."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from config import ConfigError, build_config
from data_loader import prepare_splits
from train_grpo import RUN_CONFIG_FILE, build_parser, config_from_args, rows_to_evaluate, unseen_rows


def rows(n: int) -> Dataset:
    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": "a", "rejected": "b"} for i in range(n)]
    )


def texts(dataset) -> set[str]:
    return {p[-1]["content"] for p in dataset["prompt"]}


def test_a_run_without_held_out_rows_is_evaluated_on_unseen_rows(tmp_path):
    (tmp_path / RUN_CONFIG_FILE).write_text("{}")
    config = build_config(overrides={"output_dir": str(tmp_path), "max_samples": 30})
    trained, _ = prepare_splits(rows(50), max_samples=30, eval_samples=0, seed=config.seed)
    evaluated = unseen_rows(rows(50), config, trained=True)
    assert len(evaluated) == 20 and not texts(evaluated) & texts(trained)


def test_a_base_model_is_evaluated_from_the_start_of_the_shuffle(tmp_path):
    config = build_config(overrides={"output_dir": str(tmp_path / "none"), "max_samples": 30})
    assert len(unseen_rows(rows(50), config, trained=False)) == 50


def test_a_run_that_trained_on_everything_is_refused(tmp_path):
    (tmp_path / RUN_CONFIG_FILE).write_text("{}")
    config = build_config(overrides={"output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="held out no rows"):
        unseen_rows(rows(50), config, trained=True)


def saved_run(folder, **settings) -> dict:
    """A run folder whose run_config.json holds the data and split settings it trained with."""
    values = {"dataset_name": "train.jsonl", "dataset_path": None, "dataset_subset": None, "max_samples": None}
    values |= {"eval_samples": 0, "seed": 42, **settings}
    (folder / RUN_CONFIG_FILE).write_text(json.dumps(values))
    return values


def test_eval_only_with_another_eval_samples_than_the_run_is_refused(tmp_path):
    """Found by a fault hunt: the run trained on all rows; --eval-samples 2 scored two of them, silently."""
    saved_run(tmp_path)
    config = build_config(overrides={"output_dir": str(tmp_path), "dataset_name": "train.jsonl", "eval_samples": 2})
    with pytest.raises(ConfigError, match="eval_samples=2 differs from the run's eval_samples=0"):
        rows_to_evaluate(rows(50), config)


def test_eval_only_on_the_runs_own_split_uses_its_held_out_rows(tmp_path):
    saved_run(tmp_path, eval_samples=8)
    config = build_config(overrides={"output_dir": str(tmp_path), "dataset_name": "train.jsonl", "eval_samples": 8})
    trained, held_out = prepare_splits(rows(50), max_samples=None, eval_samples=8, seed=42)
    evaluated = rows_to_evaluate(rows(50), config)
    assert texts(evaluated) == texts(held_out) and not texts(evaluated) & texts(trained)


def test_eval_only_on_other_data_than_the_run_uses_any_of_its_rows(tmp_path):
    """Found by a fault hunt: the advice 'evaluate on another dataset' was refused for a run that held none out."""
    saved_run(tmp_path)
    config = build_config(overrides={"output_dir": str(tmp_path), "dataset_name": "other.jsonl"})
    assert len(rows_to_evaluate(rows(50), config)) == 50


@pytest.mark.parametrize(("flags", "expected"), [([], ["length"]), (["--reward-function", "accuracy"], ["accuracy"])])
def test_eval_only_uses_the_runs_rewards_unless_flags_override(tmp_path, flags, expected):
    saved = {"reward_functions": ["length"], "eval_samples": 7, "seed": 3, "output_dir": str(tmp_path)}
    (tmp_path / RUN_CONFIG_FILE).write_text(json.dumps(saved))
    args = build_parser().parse_args(["--eval-only", "--output-dir", str(tmp_path), *flags])
    config = config_from_args(args)
    assert config.reward_functions == expected
    assert (config.eval_samples, config.seed) == (7, 3)  # the same held-out split as the run's
