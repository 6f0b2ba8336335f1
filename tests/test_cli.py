"""Every command line of the seed README parses into the config it means."""

from __future__ import annotations

import shlex

import pytest

from train_grpo import build_parser, cli, config_from_args

SEED_COMMANDS = {
    "--quick-test": {"model_name": "smollm2-135m", "dataset_name": "arithmetic"},
    "--reward-function accuracy": {"reward_functions": ["accuracy"]},
    "--reward-function accuracy length": {"reward_functions": ["accuracy", "length"]},
    "--max-samples 1000": {"max_samples": 1000},
    "--production": {"model_name": "llama-3.1-8b", "group_size": 8, "num_generations": 8},
    "--custom-data /path/to/your_data.jsonl": {"dataset_name": "/path/to/your_data.jsonl"},
    "--reward-function length": {"reward_functions": ["length"]},
    "--reward-function custom": {"reward_functions": ["custom"]},
    "--reward-function accuracy length custom": {"reward_functions": ["accuracy", "length", "custom"]},
    "--reward-function accuracy --reward-config config/reward_config.json": {
        "reward_config": "config/reward_config.json"
    },
    "--wandb-project my-grpo-project": {"wandb_project": "my-grpo-project"},
    "--no-wandb": {"use_wandb": False},
    "--batch-size 1 --num-generations 2": {"per_device_train_batch_size": 1},
    "--model gemma-2-9b --dataset hh_rlhf": {"model_name": "gemma-2-9b", "dataset_name": "hh_rlhf"},
    "--model qwen2.5-7b --dataset openai_summarize": {"model_name": "qwen2.5-7b"},
    "--model llama-3.1-70b --dataset ultrafeedback_large": {"dataset_name": "ultrafeedback_large"},
    "--config config/grpo_config.json --epochs 2": {"num_train_epochs": 2, "beta": 0.1},
    "--learning-rate 1e-5 --output-dir out": {"learning_rate": 1e-5, "output_dir": "out"},
    "--eval-only": {},
    "--resume-from-checkpoint out/checkpoint-4": {"resume_from_checkpoint": "out/checkpoint-4"},
    "--backend transformers --seed 7 --max-steps 3 --lora-rank 4 --max-completion-length 64": {
        "backend": "transformers",
        "seed": 7,
        "max_steps": 3,
        "lora_rank": 4,
        "max_completion_length": 64,
    },
    "--reward-function my_pkg.rewards.brevity": {"reward_functions": ["my_pkg.rewards.brevity"]},
    # repeated, the names add up (the second replaced the first: the second fault hunt)
    "--reward-function accuracy --reward-function length": {"reward_functions": ["accuracy", "length"]},
}


@pytest.mark.parametrize(("command", "expected"), SEED_COMMANDS.items())
def test_seed_command_lines_parse(command, expected):
    args = build_parser().parse_args(shlex.split(command))
    config = config_from_args(args)
    for key, value in expected.items():
        assert getattr(config, key) == value, key


def test_defaults_match_the_seed():
    config = config_from_args(build_parser().parse_args([]))
    assert (config.model_name, config.dataset_name, config.reward_functions) == (
        "llama-3.1-8b",
        "ultrafeedback",
        ["accuracy"],
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("--reward-function fancy", "accuracy, length, custom"),
        ("--quick-test --production", "not allowed with argument"),
        ("--quick-test --generation-batch-size 6", "generation_batch_size (6) must be divisible by the global batch"),
    ],
)
def test_bad_command_lines_exit_with_a_message(command, message, capsys, in_tmp_cwd):
    try:
        code = cli(shlex.split(command))
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "ERROR" in errors[0] and message in errors[0]  # one line, no usage block


def test_help_is_korean(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "사용할 모델" in out and "--reward-function" in out and "평가만 실행" in out


def test_eval_only_on_a_stream_is_refused(in_tmp_cwd):
    assert cli(["--quick-test", "--streaming", "--max-steps", "2", "--eval-only"]) == 2
    errors = [line for line in (in_tmp_cwd / "grpo_training.log").read_text().splitlines() if "ERROR" in line]
    assert errors and "drop --streaming" in errors[-1]
