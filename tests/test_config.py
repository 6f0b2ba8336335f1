"""Config: precedence, validation, JSON round trip and the mapping to trl.GRPOConfig."""

from __future__ import annotations

import json

import pytest

from config import (
    CONFIG_DIR,
    ConfigError,
    GRPOConfig,
    build_config,
    check_batch_arithmetic,
    create_default_config,
    load_config_from_file,
    save_config_to_file,
    to_trl_args,
)


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_precedence_defaults_preset_file_flags(tmp_path):
    file = write_json(tmp_path / "c.json", {"learning_rate": 2e-5, "max_steps": 5})
    assert GRPOConfig().max_steps == -1
    assert build_config(preset="quick_test").max_steps == 8  # preset beats default
    assert build_config(preset="quick_test", config_file=str(file)).max_steps == 5  # file beats preset
    flags = build_config(preset="quick_test", config_file=str(file), overrides={"max_steps": 2})
    assert flags.max_steps == 2 and flags.learning_rate == 2e-5  # flags beat file, file kept elsewhere
    assert flags.model_name == "smollm2-135m"  # preset kept where nothing overrides it


def test_seed_example_config_loads_with_every_key():
    config = load_config_from_file(CONFIG_DIR / "grpo_config.json")
    assert config.model_name == "unsloth/llama-3.1-8b-bnb-4bit"
    assert (config.group_size, config.beta, config.gamma) == (4, 0.1, 1.0)
    assert config.selected_rewards == ["accuracy", "length", "custom"]  # reward_function_type "systematic"
    assert config.reward_config_name == "balanced"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learnin_rate": 1e-5}, "unknown key(s) learnin_rate"),  # typo: listed valid keys follow
        ({"backend": "jax"}, "choose one of: auto, unsloth, transformers"),
        ({"gamma": 0.99}, "only gamma=1.0"),  # GRPO has no discounting
        ({"group_size": 1}, "at least 2"),
        ({"reward_function_type": "fancy"}, "systematic"),
        ({"reward_config_name": "spicy"}, "balanced"),
        ({"learning_rate": -1}, "learning_rate=-1 must be a positive number"),
        ({"max_completion_length": 4096}, "must be below max_seq_length"),
        ({"lora_rank": "8"}, "lora_rank='8' must be a positive number"),
        ({"streaming": True}, "give max_steps"),
    ],
)
def test_bad_values_name_the_key(tmp_path, values, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config_from_file(write_json(tmp_path / "bad.json", values))
    assert message in str(err.value)
    assert "bad.json" in str(err.value)


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config_from_file(write_json(tmp_path / "c.json", {"nonsense": 1}))
    assert "model_name" in str(err.value) and "trl.GRPOConfig" in str(err.value)


def test_trl_fields_pass_through(tmp_path):
    config = load_config_from_file(write_json(tmp_path / "c.json", {"save_total_limit": 2, "loss_type": "grpo"}))
    assert config.trl_args == {"save_total_limit": 2, "loss_type": "grpo"}
    args = to_trl_args(config, use_cpu=True, bf16=False, report_to=[])
    assert (args.save_total_limit, args.loss_type, args.num_generations) == (2, "grpo", config.group_size)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{\n  "max_steps": 3,\n  oops\n}')
    with pytest.raises(ConfigError, match="line 3"):
        load_config_from_file(path)


def test_save_load_round_trip(tmp_path):
    config = create_default_config("qwen2.5-7b", "hh_rlhf")
    config.learning_rate = 1e-6
    config.trl_args = {"warmup_steps": 10}
    path = save_config_to_file(config, tmp_path / "out.json", extra={"git_commit": "abc"})
    assert json.loads(path.read_text())["_run"] == {"git_commit": "abc"}
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "_run"}))
    assert load_config_from_file(path) == config


@pytest.mark.parametrize(
    ("batch", "accumulation", "group", "world", "ok"),
    [
        (4, 1, 4, 1, True),
        (2, 4, 4, 1, True),  # the seed's example: 2 x 4 = 8 completions, two prompts of four
        (3, 1, 4, 1, False),
        (2, 1, 4, 2, True),  # two processes make up the group
    ],
)
def test_batch_arithmetic(batch, accumulation, group, world, ok):
    config = GRPOConfig(per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, group_size=group)
    if ok:
        check_batch_arithmetic(config, world)
    else:
        with pytest.raises(ConfigError, match="Working values: --batch-size 4"):
            check_batch_arithmetic(config, world)


def test_presets_are_valid():
    for preset in ("quick_test", "production"):
        build_config(preset=preset)
