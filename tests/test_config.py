"""Config: TRL owns the trainer settings, layers merge in one order, aliases, validation, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import trl

import config as config_module
from config import (
    CONFIG_DIR,
    ConfigError,
    GRPOConfig,
    build_config,
    config_values,
    create_default_config,
    load_config_from_file,
    save_config_to_file,
    whole_group_generation_batch,
)
from config_base import PROJECT_DEFAULTS


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_no_trl_field_is_declared_again():
    ours = {f.name for f in dataclasses.fields(GRPOConfig)} - set(trl.GRPOConfig.__dataclass_fields__)
    assert ours == set(config_module.OWN_KEYS)
    redeclared = [n for n in GRPOConfig.__annotations__ if n in trl.GRPOConfig.__dataclass_fields__]
    assert redeclared == []
    assert issubclass(GRPOConfig, trl.GRPOConfig)


def test_precedence_defaults_preset_file_flags(tmp_path):
    file = write_json(tmp_path / "c.json", {"learning_rate": 2e-5, "max_steps": 5})
    assert build_config().max_steps == -1  # TRL's default
    assert build_config(preset="quick_test").max_steps == 8  # preset beats default
    assert build_config(preset="quick_test", config_file=str(file)).max_steps == 5  # file beats preset
    flags = build_config(preset="quick_test", config_file=str(file), overrides={"max_steps": 2})
    assert flags.max_steps == 2 and flags.learning_rate == 2e-5  # flags beat file, file kept elsewhere
    assert flags.model_name == "smollm2-135m"  # preset kept where nothing overrides it
    assert build_config().learning_rate == PROJECT_DEFAULTS["learning_rate"]  # project default beats TRL's


# The seed's example config (config/grpo_config.json): every key, what it becomes.
SEED_KEYS = {
    "model_name": ("model_name", "unsloth/llama-3.1-8b-bnb-4bit"),
    "max_seq_length": ("max_seq_length", 2048),
    "learning_rate": ("learning_rate", 5e-7),
    "num_train_epochs": ("num_train_epochs", 3),
    "per_device_train_batch_size": ("per_device_train_batch_size", 2),
    "per_device_eval_batch_size": ("per_device_eval_batch_size", 2),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", 4),
    "max_samples": ("max_samples", 1000),
    "output_dir": ("output_dir", "./grpo_outputs"),
    "beta": ("beta", 0.1),
    "gamma": (None, None),  # checked, nothing stored
    "group_size": ("num_generations", 4),
    "reward_function_type": ("reward_functions", ["accuracy", "length", "custom"]),
    "reward_config_name": ("reward_config_name", "balanced"),
}


def test_seed_example_config_covers_every_key():
    assert set(json.loads((CONFIG_DIR / "grpo_config.json").read_text())) == set(SEED_KEYS)


@pytest.mark.parametrize(("key", "target"), SEED_KEYS.items())
def test_seed_example_config_key(key, target):
    config = load_config_from_file(CONFIG_DIR / "grpo_config.json")
    attribute, value = target
    if attribute is not None:
        assert getattr(config, attribute) == value
    else:
        assert key not in config_values(config)


@pytest.mark.parametrize(
    ("lower", "upper", "attribute", "expected"),
    [
        # Each alias in a file, its canonical key as a flag, and the other way round: the higher layer wins.
        ({"group_size": 4}, {"num_generations": 8}, "num_generations", 8),
        ({"num_generations": 8}, {"group_size": 2}, "num_generations", 2),
        ({"reward_function_type": "systematic"}, {"reward_functions": ["accuracy"]}, "reward_functions", ["accuracy"]),
        ({"reward_functions": ["length"]}, {"reward_function_type": "accuracy"}, "reward_functions", ["accuracy"]),
        ({"custom_data": "a.jsonl"}, {"dataset_name": "hh_rlhf"}, "dataset_name", "hh_rlhf"),
        ({"dataset_name": "hh_rlhf"}, {"custom_data": "b.jsonl"}, "dataset_name", "b.jsonl"),
        ({"temperature": 0.7}, {"temperature": 0.9}, "temperature", 0.9),  # a TRL field with no flag of its own
    ],
)
def test_aliases_and_layer_order(tmp_path, lower, upper, attribute, expected):
    file = write_json(tmp_path / "c.json", lower)
    assert getattr(build_config(config_file=str(file), overrides=upper), attribute) == expected
    # the same two layers as preset-like file and command line, and reversed
    reverse = write_json(tmp_path / "r.json", upper)
    assert getattr(build_config(config_file=str(reverse)), attribute) == expected


def test_file_reward_type_does_not_beat_the_flag(tmp_path):
    """Leak 1: reward_function_type in a file beat --reward-function on the command line."""
    file = write_json(tmp_path / "c.json", {"reward_function_type": "systematic"})
    config = build_config(config_file=str(file), overrides={"reward_functions": ["accuracy"]})
    assert config.reward_functions == ["accuracy"]
    assert config.reward_weights == [1.0]  # the weights follow the rewards really used
    saved = config_values(config)
    assert saved["reward_functions"] == ["accuracy"] and "reward_function_type" not in saved


def test_custom_data_in_a_file_is_used(tmp_path):
    """Leak 2: custom_data in a config file was accepted and ignored (the run trained on ultrafeedback)."""
    file = write_json(tmp_path / "c.json", {"custom_data": "my.jsonl"})
    assert build_config(config_file=str(file)).dataset_name == "my.jsonl"


def test_num_generations_and_group_size_are_one_value(tmp_path):
    """Leak 3: num_generations in a file went to TRL while group_size stayed 4 for our own checks."""
    file = write_json(tmp_path / "c.json", {"num_generations": 3, "per_device_train_batch_size": 3})
    config = build_config(config_file=str(file))
    assert config.num_generations == config.group_size == 3
    config.group_size = 6
    assert config.num_generations == 6
    # 4 x 2 = 8 completions per optimizer step are no whole groups of 3: a round generates 24 (3 steps)
    assert (
        build_config(config_file=str(write_json(tmp_path / "n3.json", {"num_generations": 3}))).generation_batch_size
        == 24
    )
    bad = write_json(tmp_path / "bad.json", {"num_generations": 3, "generation_batch_size": 8})  # given: TRL's check
    with pytest.raises(ConfigError, match=r"generation_batch_size \(8\) must be divisible by num_generations \(3\)"):
        build_config(config_file=str(bad))


def test_same_setting_twice_in_one_layer_is_refused(tmp_path):
    file = write_json(tmp_path / "c.json", {"group_size": 4, "num_generations": 8})
    with pytest.raises(ConfigError, match="name the same setting"):
        build_config(config_file=str(file))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learnin_rate": 1e-5}, "did you mean learning_rate"),
        ({"warmup_ratio": 0.1}, "unknown key(s) warmup_ratio"),  # not a field of TRL 1.15
        ({"backend": "jax"}, "choose one of: auto, unsloth, transformers"),
        ({"gamma": 0.99}, "only gamma=1.0"),
        ({"group_size": 1}, "at least 2"),
        ({"reward_function_type": "fancy"}, "systematic"),
        ({"reward_config_name": "spicy"}, "balanced"),
        ({"learning_rate": -1}, "learning_rate=-1 must be a positive number"),
        ({"reward_weights": [float("nan")]}, "every number must be finite"),  # learned nothing (fault hunt)
        ({"reward_functions": ["accuracy", "accuracy"]}, "names accuracy twice"),
        ({"top_p": 2.0}, "top_p=2.0 must be in (0, 1]"),  # these trained without a word, or failed mid-step
        ({"top_p": 0.0}, "top_p=0.0 must be in (0, 1]"),
        ({"min_p": 2.0}, "min_p=2.0 must be in [0, 1]"),
        ({"repetition_penalty": 0.0}, "repetition_penalty=0.0 must be a positive number"),
        ({"epsilon": -1.0}, "epsilon=-1.0 must be a positive number"),
        ({"importance_sampling_level": "foo"}, "choose one of: token, sequence"),
        ({"vllm_mode": "foo"}, "choose one of: server, colocate"),
        ({"reward_weights": [float("inf")]}, "every number must be finite"),
        ({"max_completion_length": 4096}, "must be below max_seq_length"),
        ({"lora_rank": "8"}, "lora_rank='8' must be an integer"),
        ({"streaming": True}, "give max_steps"),
        ({"max_steps": "two"}, "max_steps='two' must be an integer"),
        ({"seed": "abc"}, "seed='abc' must be an integer"),
        ({"warmup_steps": "lots"}, "warmup_steps='lots' must be a number"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"lora_dropout": 1.0}, "lora_dropout=1.0"),
        ({"temperature": 0}, "temperature=0 must be a positive number"),
        ({"beta": -0.1}, "beta=-0.1 must be zero or more"),
        ({"bf16": "yes"}, "bf16='yes' must be true or false"),
        ({"reward_functions": []}, "reward_functions is empty"),
        ({"reward_functions": ["fancy"]}, "accuracy, length, custom"),
        ({"lr_scheduler_type": 3}, "lr_scheduler_type=3"),
        ({"eval_steps": 5}, "needs held-out rows"),
        ({"generation_batch_size": 6}, "generation_batch_size"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path, values, message):
    with pytest.raises(ConfigError) as err:
        load_config_from_file(write_json(tmp_path / "bad.json", values))
    assert message in str(err.value)
    assert "bad.json" in str(err.value) or "divisible" in str(err.value)


def test_nan_is_refused_everywhere(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text('{"learning_rate": NaN}')
    with pytest.raises(ConfigError, match="learning_rate=nan must be a finite number"):
        load_config_from_file(path)
    with pytest.raises(ConfigError, match="finite"):
        GRPOConfig(max_grad_norm=math.inf)


def test_trl_fields_pass_through(tmp_path):
    config = load_config_from_file(write_json(tmp_path / "c.json", {"save_total_limit": 2, "loss_type": "grpo"}))
    assert isinstance(config, trl.GRPOConfig)
    assert (config.save_total_limit, config.loss_type) == (2, "grpo")


def test_older_files_with_trl_args_still_load(tmp_path):
    config = load_config_from_file(write_json(tmp_path / "c.json", {"trl_args": {"warmup_steps": 3}}))
    assert config.warmup_steps == 3


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{\n  "max_steps": 3,\n  oops\n}')
    with pytest.raises(ConfigError, match="line 3"):
        load_config_from_file(path)


def test_save_load_round_trip(tmp_path):
    config = create_default_config("qwen2.5-7b", "hh_rlhf")
    config.learning_rate = 1e-6
    config.warmup_steps = 10
    path = save_config_to_file(config, tmp_path / "out.json", extra={"git_commit": "abc"})
    saved = json.loads(path.read_text())
    assert saved["_run"]["git_commit"] == "abc" and "use_cpu" in saved["_run"]
    assert "use_cpu" not in saved and "bf16" not in saved  # decided by the machine that reads the file
    again = load_config_from_file(path)
    assert config_values(again) == config_values(config)


def test_python_api_uses_trl_defaults_and_accepts_aliases():
    config = GRPOConfig(model_name="m", group_size=2, per_device_train_batch_size=2, custom_data="d.jsonl")
    assert (config.num_generations, config.dataset_name) == (2, "d.jsonl")
    assert config.use_cpu  # no GPU here; TRL would refuse bf16 otherwise


@pytest.mark.parametrize(
    ("batch", "accumulation", "group", "world", "generated"),
    [
        (4, 1, 4, 1, None),
        (2, 4, 4, 1, None),  # the seed's example: 2 x 4 = 8 completions, two prompts of four
        (1, 2, 4, 1, 4),  # the seed's fix for running out of memory, --batch-size 1: rounds of 4 for 2 steps
        (3, 1, 4, 1, 12),
        (2, 1, 4, 2, None),  # two processes make up the group
    ],
)
def test_the_generation_batch_holds_whole_groups(batch, accumulation, group, world, generated):
    values = {"per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation}
    values["num_generations"] = group
    expected = {} if generated is None else {"generation_batch_size": generated}
    assert whole_group_generation_batch(values, world) == expected
    assert whole_group_generation_batch({**values, "generation_batch_size": 6}, world) == {}  # given: TRL checks it


def test_each_setting_knows_its_layer(tmp_path):
    from config import GRPOConfig, setting_source

    file = tmp_path / "c.json"
    file.write_text('{"learning_rate": 1e-6, "group_size": 4}')
    config = build_config(preset="production", config_file=file, overrides={"max_steps": 3})
    assert setting_source(config, "eval_samples") == "preset 'production'"
    assert setting_source(config, "learning_rate") == setting_source(config, "num_generations") == f"config file {file}"
    assert setting_source(config, "max_steps") == "command line"
    assert setting_source(config, "weight_decay") == "the defaults"
    assert setting_source(GRPOConfig(output_dir="o"), "eval_samples") == "the GRPOConfig given"


def test_a_new_run_from_an_adapter_takes_its_base_model_and_shape(tmp_path):
    """--init-adapter without --model loaded the default llama-3.1-8b, which the adapter does not fit."""
    from config import setting_source

    adapter = tmp_path / "run"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    saved = {"base_model_name_or_path": "/models/base", "r": 4, "target_modules": ["v_proj", "q_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps(saved))
    config = build_config(overrides={"init_adapter": str(adapter)})
    assert (config.model_name, config.lora_rank) == ("/models/base", 4)
    assert setting_source(config, "model_name") == f"init_adapter {adapter}"
    given = build_config(overrides={"init_adapter": str(adapter), "model_name": "other", "lora_rank": 8})
    assert (given.model_name, given.lora_rank) == ("other", 8)  # what the user gave wins (and may then misfit)


def test_presets_are_valid(tmp_path, monkeypatch):
    """From any directory: a preset's reward config is the project's file (--production elsewhere failed)."""
    from rewards import load_reward_config

    monkeypatch.chdir(tmp_path)
    for preset in ("quick_test", "production"):
        config = build_config(preset=preset)
        assert load_reward_config(config.reward_config)
        assert config.output_dir.startswith("./grpo_outputs/")  # still the working directory's


@pytest.fixture()
def on_a_gpu(monkeypatch):
    """This machine as a CUDA host for the decisions a config makes (nothing is loaded)."""
    import memory
    import models

    monkeypatch.setattr(models, "cuda_available", lambda: True)
    monkeypatch.setattr(
        models, "resolve_backend", lambda requested: "transformers" if requested != "unsloth" else requested
    )
    monkeypatch.setattr(memory, "generation_batch_for", lambda config, path, four_bit, world: (64, "fits 64"))


@pytest.mark.parametrize(
    ("flags", "generation_batch", "cache"),
    [
        ({}, 64, None),  # bnb 4-bit with a large generation batch: dynamic cache (faster there)
        ({"load_in_4bit": False}, 64, "static"),  # bf16 weights: static cache
        ({"generation_batch_size": 16}, 16, "static"),  # given by the user, kept
        ({"backend": "unsloth"}, 64, None),  # Unsloth has its own cache
        # steps_per_generation 4 x batch 16 = 64 completions at once: as large as above, so dynamic too
        ({"steps_per_generation": 4, "per_device_train_batch_size": 16}, 64, None),
        ({"steps_per_generation": 1, "per_device_train_batch_size": 16}, 16, "static"),
        # transformers does not compile bnb 4-bit decoding (measured: no gain, 2 x H200): dynamic stays
        ({"compile_generation": True}, 64, None),
        ({"compile_generation": True, "load_in_4bit": False}, 64, "static"),  # compiled decoding needs static
    ],
)
def test_generation_batch_and_cache_chosen_on_a_gpu(on_a_gpu, flags, generation_batch, cache):
    config = build_config(overrides=flags)
    assert config.generation_batch_size == generation_batch and config.cache_implementation == cache


def test_trl_defaults_are_read_without_setting_up_devices():
    """Building a trl.GRPOConfig sets up devices; under several processes a CPU-flavoured one started the
    process group with gloo before accelerate chose NCCL, and every GPU collective failed (4 x H200)."""
    from accelerate import PartialState

    import config as config_module

    PartialState._reset_state()
    config_module._trl_default_values.cache_clear()
    config_module._trl_default_values()
    assert PartialState._shared_state == {}


def test_trl_defaults_match_a_built_trl_config():
    import trl

    import config as config_module

    config_module._trl_default_values.cache_clear()
    declared = config_module._trl_default_values()
    built = trl.GRPOConfig(output_dir=declared["output_dir"], use_cpu=True, bf16=False).to_dict()
    derived_by_trl = {"generation_batch_size", "steps_per_generation", "dataloader_pin_memory"}
    assert {k for k in built if built[k] != declared.get(k)} <= derived_by_trl
    assert set(built) == set(declared)


def test_a_setting_given_under_both_names_in_python_must_agree():
    """As in a config file: GRPOConfig(group_size=4, num_generations=6) took 4 silently (fault hunt), and so did
    num_generations=8, TRL's default (fourth hunt: a default value passed could not be told from none)."""
    with pytest.raises(ConfigError, match="group_size=4 and num_generations=6 name the same setting"):
        GRPOConfig(group_size=4, num_generations=6)
    with pytest.raises(ConfigError, match="group_size=4 and num_generations=8 name the same setting"):
        GRPOConfig(group_size=4, num_generations=8, per_device_train_batch_size=8)
    with pytest.raises(ConfigError, match="name the same setting"):
        GRPOConfig(reward_function_type="length", reward_functions=["accuracy"])
    assert GRPOConfig(group_size=4).num_generations == 4
    assert GRPOConfig(group_size=4, num_generations=4).num_generations == 4
    # a list default (from its factory) is a default too: the alias alone failed as if both were given (third hunt)
    assert GRPOConfig(reward_function_type="length").reward_functions == ["length"]


def test_the_trainer_wants_a_config_object_not_a_dict():
    from grpo_trainer import GRPOTrainer

    with pytest.raises(TypeError, match="GRPOTrainer needs a GRPOConfig, got dict"):
        GRPOTrainer({"model_name": "smollm2-135m"})


def test_a_runs_record_names_its_local_files_absolutely(tmp_path, monkeypatch):
    """Found by a fault hunt: run_config.json kept relative paths, so evaluating the run from another directory did
    not find its reward config; hub ids and short names stay as they are."""
    from config import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.jsonl").write_text("{}")
    (tmp_path / "my_rewards.py").write_text("")
    values = {"dataset_name": "data.jsonl", "model_name": "smollm2-135m", "reward_config": None}
    values["reward_functions"] = ["accuracy", "my_rewards.py:score", "pkg.module.fn"]
    fixed = with_absolute_paths(values)
    assert fixed["dataset_name"] == str(tmp_path / "data.jsonl") and fixed["model_name"] == "smollm2-135m"
    assert fixed["reward_functions"] == ["accuracy", f"{tmp_path / 'my_rewards.py'}:score", "pkg.module.fn"]
    assert fixed["reward_config"] is None


def test_a_mistyped_keyword_in_python_names_the_close_setting():
    from config import ConfigError

    with pytest.raises(
        ConfigError, match=r"GRPOConfig\(\.\.\.\): unknown key\(s\) learnin_rate \(did you mean learning_rate\?\)"
    ):
        GRPOConfig(learnin_rate=1e-4)
    assert GRPOConfig(group_size=4, learning_rate=1e-4).num_generations == 4  # aliases and TRL's fields still pass


def test_loss_types_are_the_ones_trl_declares():
    """Read from TRL's help text, its only list of them: empty means TRL reworded it and the check is off."""
    from config import values_trl_lists

    assert {"grpo", "dr_grpo", "dapo", "bnpo"} <= set(values_trl_lists("loss_type"))
    with pytest.raises(ConfigError, match="loss_type='dappo' is not valid; choose one of: grpo, dr_grpo, dapo"):
        __import__("config").check_value("loss_type", "dappo")


def test_a_reward_model_alone_is_the_only_reward(tmp_path):
    """README: `--reward-model runs/rm` is the reward, summed with rewards only when they are named (a fault hunt
    found the default accuracy reward added at equal weight, unsaid)."""
    alone = build_config(overrides={"reward_model": "runs/rm"})
    assert (alone.reward_functions, alone.reward_weights) == ([], [1.0])
    both = build_config(overrides={"reward_model": "runs/rm", "reward_functions": ["length"]})
    assert (both.reward_functions, both.reward_weights) == (["length"], [1.0, 1.0])
    named_in_a_file = build_config(
        config_file=str(write_json(tmp_path / "c.json", {"reward_functions": ["accuracy"]})),
        overrides={"reward_model": "runs/rm"},
    )
    assert named_in_a_file.reward_functions == ["accuracy"]


def test_reward_weights_that_replace_the_reward_configs_are_said(caplog):
    """reward_weights [1.0, 0.5] silently beat the reward config's length weight 3.0 (fourth fault hunt)."""
    overrides = {"reward_functions": ["accuracy", "length"], "reward_config": {"length": {"weight": 3.0}}}
    build_config(overrides={**overrides, "reward_weights": [1.0, 0.5]})
    assert (
        "reward_weights [1.0, 0.5] replaces the weights the reward config or preset gives ([1.0, 3.0])" in caplog.text
    )
    caplog.clear()
    build_config(overrides={**overrides, "reward_weights": [1.0, 3.0]})
    assert "replaces" not in caplog.text


def test_a_reward_model_counts_as_used_when_its_score_is_among_the_given_rewards():
    """The CLI hands GRPOTrainer the config's own rewards, reward model included: warning that it went unused was
    wrong there; rewards of the caller's that leave it out still warn."""
    from grpo_trainer import _scores_with_a_reward_model
    from reward_model import REWARD_FUNCTION_NAME

    def reward_model_score(completions, **kwargs):
        return [0.0] * len(completions)

    def length_reward(completions, **kwargs):
        return [1.0] * len(completions)

    reward_model_score.__name__ = REWARD_FUNCTION_NAME
    assert _scores_with_a_reward_model(None)  # built from the config, reward model included
    assert _scores_with_a_reward_model([length_reward, reward_model_score])
    assert not _scores_with_a_reward_model([length_reward])
