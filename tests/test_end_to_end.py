"""End to end on a tiny random-init model: the CLI trains, the LoRA weights change, files are written,
the adapter reloads for --eval-only, and the seed README's Python snippets run with local names."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from safetensors.torch import load_file

import train_grpo
from conftest import tiny_cli_args

LENGTH_REWARD = {"length": {"optimal_length": 8, "unit": "characters"}}


def tiny_run_args(model_dir: Path, out: Path, reward_config: Path, *extra: str) -> list[str]:
    return tiny_cli_args(
        model_dir,
        out,
        "--reward-config",
        str(reward_config),
        "--max-steps",
        "3",
        "--eval-samples",
        "8",
        *extra,
        rewards=("accuracy", "length"),
    )


@pytest.fixture()
def reward_config(tmp_path) -> Path:
    path = tmp_path / "rewards.json"
    path.write_text(json.dumps(LENGTH_REWARD))
    return path


def test_cli_trains_and_writes_everything(tiny_model_dir, in_tmp_cwd, reward_config):
    out = in_tmp_cwd / "run"
    assert train_grpo.cli(tiny_run_args(tiny_model_dir, out, reward_config)) == 0

    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b, "the adapter has no LoRA B matrices"
    # PEFT initialises every lora_B to zero, so any non-zero entry means training changed the weights.
    assert any(t.abs().max() > 0 for t in lora_b)

    saved = json.loads((out / "run_config.json").read_text())
    assert saved["model_name"] == str(tiny_model_dir) and saved["max_steps"] == 3
    assert saved["_run"]["versions"]["trl"]
    run_log = (out / "grpo_training.log").read_text()
    assert "training finished" in run_log
    assert "Completion" in run_log and "step 3/3" in run_log  # TRL's completion table and our metric lines
    assert (in_tmp_cwd / "grpo_training.log").is_file()

    assert train_grpo.cli(tiny_run_args(tiny_model_dir, out, reward_config, "--eval-only")) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_prompts"] == 8
    assert set(results["rewards"]) == {"accuracy_reward", "length_reward", "reward"}
    assert "loaded adapter weights" in (out / "grpo_training.log").read_text()
    assert "evaluating the base model" not in (out / "grpo_training.log").read_text()
    assert (results["model"], results["adapter"]) == (str(tiny_model_dir), str(out))  # what was scored
    # --init-adapter / --resume-from-checkpoint name the adapter to score (both were ignored: fault hunt)
    for flag, adapter in (("--init-adapter", out), ("--resume-from-checkpoint", out / "checkpoint-3")):
        scored = in_tmp_cwd / f"eval{flag}"
        assert (
            train_grpo.cli(tiny_run_args(tiny_model_dir, scored, reward_config, "--eval-only", flag, str(adapter))) == 0
        )
        assert json.loads((scored / "eval_results.json").read_text())["adapter"] == str(adapter)
    # a mistyped run folder evaluates the base model, and says so (found by a fault hunt: only the summary did)
    typo = in_tmp_cwd / "runn"
    assert train_grpo.cli(tiny_run_args(tiny_model_dir, typo, reward_config, "--eval-only")) == 0
    assert f"no adapter in {typo}: evaluating the base model" in (typo / "grpo_training.log").read_text()


def test_explicit_output_dir_is_never_overwritten(tiny_model_dir, in_tmp_cwd, reward_config):
    out = in_tmp_cwd / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert train_grpo.cli(tiny_run_args(tiny_model_dir, out, reward_config)) == 2
    assert (out / "precious.txt").read_text() == "keep me"
    # The error reaches the seed's log file in the working directory, where `grep ERROR` finds it.
    errors = [line for line in (in_tmp_cwd / "grpo_training.log").read_text().splitlines() if "ERROR" in line]
    assert errors and "holds files that are not a run" in errors[0] and "--overwrite" in errors[0]


def test_seed_python_snippets(tiny_model_dir, in_tmp_cwd, reward_config):
    """The README's two snippets, with the model and dataset swapped for local ones."""
    from config import create_default_config, load_config_from_file, save_config_to_file
    from run_utils import RunDirError

    config = create_default_config("llama-3.1-8b", "ultrafeedback")
    config.learning_rate = 1e-6
    config.num_train_epochs = 5
    config.max_samples = 5000
    save_config_to_file(config, "my_config.json")
    assert load_config_from_file("my_config.json").max_samples == 5000

    from data_loader import create_grpo_dataloader
    from grpo_trainer import GRPOConfig, GRPOTrainer

    data_file = in_tmp_cwd / "data.jsonl"
    data_file.write_text(
        "\n".join(json.dumps({"prompt": f"What is {i} + 1?", "chosen": str(i + 1), "rejected": "no"}) for i in range(8))
    )
    config = GRPOConfig(
        model_name=str(tiny_model_dir),
        max_samples=8,
        output_dir="./my_grpo_outputs",
        max_steps=2,
        max_completion_length=8,
        reward_functions=["length"],
        reward_config=str(reward_config),
        use_wandb=False,
    )
    data_loader, dataset = create_grpo_dataloader(
        model_name=config.model_name, dataset_name=str(data_file), max_samples=config.max_samples
    )
    assert len(dataset) == 8 and len(next(iter(data_loader))) == 8
    trainer = GRPOTrainer(config)
    trainer.load_model()
    summary = trainer.train(dataset)
    trainer.save_model()
    assert summary["steps"] == 2
    with pytest.raises(RunDirError, match="already trained a run"):  # a second call logged step 1 again (hunt)
        trainer.train(dataset)
    assert Path("my_grpo_outputs/adapter_model.safetensors").is_file()
    assert json.loads(Path("my_grpo_outputs/run_state.json").read_text())["state"] == "finished"

    # The same lines again (another session, another setting): the finished run is kept, not trained over
    # (fault hunt: its adapter and metrics were overwritten without a word).
    adapter = Path("my_grpo_outputs/adapter_model.safetensors").read_bytes()
    again = GRPOTrainer(dataclasses.replace(config, learning_rate=0.5))
    with pytest.raises(RunDirError, match="holds a finished run"):
        again.train(dataset)
    with pytest.raises(RunDirError, match="holds another run"):
        again.save_model()
    with pytest.raises(RunDirError, match="holds another run"):  # with the path given, too (fourth hunt)
        again.save_model("my_grpo_outputs")
    with pytest.raises(RunDirError, match="is a file; give a folder"):
        again.save_model("my_config.json")
    with pytest.raises(RunDirError, match="has not loaded its adapter"):  # the base model's scores replaced its own
        again.evaluate(dataset)
    assert Path("my_grpo_outputs/adapter_model.safetensors").read_bytes() == adapter
    assert again.loaded is None  # refused before loading


def test_streaming_custom_data_trains(tiny_model_dir, in_tmp_cwd, reward_config):
    data = in_tmp_cwd / "stream.jsonl"
    data.write_text(
        "\n".join(json.dumps({"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"}) for i in range(40))
    )
    out = in_tmp_cwd / "run"
    args = tiny_run_args(tiny_model_dir, out, reward_config, "--streaming", "--custom-data", str(data))
    args[args.index("--eval-samples") + 1] = "0"
    del args[args.index("--dataset") : args.index("--dataset") + 2]  # --custom-data names the dataset
    assert train_grpo.cli(args) == 0
    assert (out / "adapter_model.safetensors").is_file()
    assert "skipped as they are read" in (out / "grpo_training.log").read_text()


def test_a_finished_run_continues_as_a_new_run_from_its_adapter(tiny_model_dir, in_tmp_cwd, reward_config):
    first, second = in_tmp_cwd / "first", in_tmp_cwd / "second"
    assert train_grpo.cli([*tiny_run_args(tiny_model_dir, first, reward_config), "--max-steps", "1"]) == 0
    args = [*tiny_run_args(tiny_model_dir, second, reward_config), "--max-steps", "1", "--init-adapter", str(first)]
    assert train_grpo.cli(args) == 0
    assert f"loaded adapter weights from {first}" in (second / "grpo_training.log").read_text()
    assert json.loads((second / "run_config.json").read_text())["init_adapter"] == str(first)
    refused = [*tiny_run_args(tiny_model_dir, in_tmp_cwd / "third", reward_config), "--init-adapter", str(second / "x")]
    assert train_grpo.cli(refused) == 2  # no adapter there: one ERROR line before anything loads


def test_weights_given_to_the_trainer_reach_trl(tiny_model_dir, in_tmp_cwd):
    from datasets import Dataset

    from config import build_config
    from grpo_trainer import GRPOTrainer

    config = build_config(overrides={"model_name": str(tiny_model_dir), "output_dir": "out", "max_steps": 1})
    assert config.reward_weights == [1.0]

    def first_reward(completions, **kwargs):
        return [1.0] * len(completions)

    def second_reward(completions, **kwargs):
        return [0.0] * len(completions)

    trainer = GRPOTrainer(config, reward_functions=[first_reward, second_reward], reward_weights=[1.0, 0.5])
    trainer.load_model()
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}] * 8)
    trl_trainer = trainer.build_trl_trainer(rows)
    assert list(trl_trainer.args.reward_weights) == [1.0, 0.5]
    assert trl_trainer.reward_weights.tolist() == [1.0, 0.5]
    assert config.reward_weights == [1.0]  # the caller's config is not changed


def test_compiled_decoding_gets_one_static_cache_size_for_the_run(tiny_model_dir, in_tmp_cwd):
    """With compile_generation, the static KV cache is sized once for the data's longest prompt plus the completion:
    transformers would otherwise grow it, and recompile the decoding, whenever a round's prompts are the longest
    yet (prompt lengths vary from round to round in real data)."""
    from datasets import Dataset

    from config import build_config
    from data_loader import prompt_token_counts
    from grpo_trainer import GRPOTrainer

    overrides = {"model_name": str(tiny_model_dir), "output_dir": "out", "max_steps": 1, "max_completion_length": 8}
    config = build_config(overrides={**overrides, "compile_generation": True, "cache_implementation": "static"})
    trainer = GRPOTrainer(config, reward_functions=[lambda completions, **kwargs: [0.0] * len(completions)])
    trainer.load_model()
    prompts = ["hi", "a longer question " * 5, "a much longer question, with more words in it " * 9]
    rows = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": p}], "chosen": "a", "rejected": "b"} for p in prompts]
    )
    generation_config = trainer.build_trl_trainer(rows).generation_config
    longest = max(prompt_token_counts(rows, trainer.loaded.tokenizer))
    assert longest > 40 and generation_config.max_cache_len == longest + 8
    assert generation_config.disable_compile is False
    # without compilation nothing changes: TRL's generation config as it builds it
    plain = GRPOTrainer(build_config(overrides=overrides), reward_functions=trainer.reward_functions)
    plain.loaded = trainer.loaded
    assert plain.build_trl_trainer(rows).generation_config.max_cache_len is None


@pytest.mark.parametrize(
    ("cache", "four_bit", "reason"),
    [
        ("dynamic", False, "cache_implementation is 'dynamic'"),
        # transformers' own flag: bitsandbytes 4-bit models decode uncompiled whatever generate is told (found on
        # 2 x H200: compile_generation on 4-bit weights gave no gain)
        ("static", True, "transformers does not compile the decoding of bitsandbytes weights"),
    ],
)
def test_compile_generation_that_cannot_act_says_why(tiny_model_dir, in_tmp_cwd, caplog, cache, four_bit, reason):
    """Compiled decoding needs the static cache and weights transformers compiles: otherwise the option would do
    nothing, silently."""
    from datasets import Dataset
    from transformers import BitsAndBytesConfig
    from transformers.quantizers.quantizer_bnb_4bit import Bnb4BitHfQuantizer

    from config import build_config
    from grpo_trainer import GRPOTrainer

    overrides = {"model_name": str(tiny_model_dir), "output_dir": "out", "max_steps": 1, "max_completion_length": 8}
    config = build_config(overrides={**overrides, "compile_generation": True, "cache_implementation": cache})
    trainer = GRPOTrainer(config, reward_functions=[lambda completions, **kwargs: [0.0] * len(completions)])
    trainer.load_model()
    if four_bit:  # what loading in 4-bit attaches (bitsandbytes itself needs CUDA)
        trainer.model.get_base_model().hf_quantizer = Bnb4BitHfQuantizer(BitsAndBytesConfig(load_in_4bit=True))
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}])
    generation_config = trainer.build_trl_trainer(rows).generation_config
    assert generation_config.disable_compile is True
    assert f"compile_generation is ignored: {reason}" in caplog.text


def test_generate_takes_plain_strings_one_completion_each(tiny_model_dir, in_tmp_cwd):
    """generate("What is 2+2?") cut the string into characters and returned a completion per character batch."""
    from config import ConfigError, build_config
    from grpo_trainer import GRPOTrainer

    config = build_config(
        overrides={"model_name": str(tiny_model_dir), "output_dir": "out", "max_completion_length": 4}
    )
    trainer = GRPOTrainer(config, reward_functions=["length"])
    trainer.load_model()
    assert len(trainer.generate("What is 2+2?", max_new_tokens=2)) == 1
    chat = [{"role": "user", "content": "Hi"}]
    assert len(trainer.generate(["q1", "q2", chat], max_new_tokens=2)) == 3
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        trainer.generate("q", max_new_tokens=0)
    with pytest.raises(ConfigError, match="max_new_tokens='3'"):  # a TypeError inside transformers (fourth hunt)
        trainer.generate("q", max_new_tokens="3")
    from data_loader import DataError

    for odd, words in ((None, "got NoneType"), ({"role": "user", "content": "hi"}, "got dict"), ([1, 2], "row 0")):
        with pytest.raises(DataError, match=words):  # a dict was read key by key; [1, 2] gave one completion
            trainer.generate(odd)


@pytest.mark.parametrize(
    ("call", "data", "words"),
    [
        ("train", [{"question": "q", "answer": "a"}], "no 'prompt' column (columns: question, answer)"),
        ("evaluate", "stream", "not a stream"),
        ("evaluate", {"prompt": ["q"]}, "needs a datasets.Dataset (or a list of rows), got dict"),
        # fourth hunt: these failed inside TRL's first step, after the model was loaded
        ("train", [{"prompt": None}] * 2, "row 0's prompt is None"),
        ("train", [{"prompt": "q"}, {"prompt": 5}], "train: row 1: column 'prompt' holds a number"),
        ("train", [{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}], "user turn"),
        ("evaluate", "empty", "the data has no rows"),
    ],
)
def test_python_data_of_the_wrong_shape_is_one_data_error(tiny_model_dir, in_tmp_cwd, call, data, words):
    """TRL failed mid-step with KeyError: 'prompt', or a TypeError (third fault hunt); checked before loading."""
    from datasets import Dataset

    from config import build_config
    from data_loader import DataError
    from grpo_trainer import GRPOTrainer

    if data == "stream":
        data = Dataset.from_list([{"prompt": [{"role": "user", "content": "q"}]}]).to_iterable_dataset()
    if data == "empty":
        data = Dataset.from_dict({"prompt": []})
    trainer = GRPOTrainer(build_config(overrides={"model_name": str(tiny_model_dir), "output_dir": "out"}))
    with pytest.raises(DataError, match=re.escape(words)):
        getattr(trainer, call)(data)
    assert trainer.loaded is None


def test_the_loader_takes_a_path_object(tmp_path):
    from data_loader import DataError, load_grpo_dataset

    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a"}\n')
    assert len(load_grpo_dataset(path)) == 1
    with pytest.raises(DataError, match="got int"):
        load_grpo_dataset(42)


@pytest.mark.parametrize(
    ("rewards", "weights", "words"),
    [
        (["length"], [1.0, 2.0], "reward_weights [1.0, 2.0] for 1 reward(s) (length_reward)"),
        (["length"], [float("nan")], "give one finite number per reward"),
        ("length", None, "reward_functions must be a list, got str"),
        (["length"], 1.0, "reward_weights must be a list, got float"),
        (["length", "length"], None, "reward_functions[1] is length_reward again"),
        (["length"], "callbacks", "callbacks[0] is int; give transformers.TrainerCallback"),
    ],
)
def test_reward_arguments_are_checked_before_the_model_loads_or_the_folder_is_claimed(
    tiny_model_dir, in_tmp_cwd, rewards, weights, words
):
    """A wrong weight count was found after the model loaded and left the folder marked as a run (fourth hunt)."""
    from config import ConfigError, build_config
    from grpo_trainer import GRPOTrainer

    config = build_config(overrides={"model_name": str(tiny_model_dir), "output_dir": "out", "use_wandb": False})
    callbacks = [1] if weights == "callbacks" else None
    weights = None if weights == "callbacks" else weights
    with pytest.raises(ConfigError, match=re.escape(words)):
        GRPOTrainer(config, reward_functions=rewards, reward_weights=weights).train(
            [{"prompt": "q"}] * 8, callbacks=callbacks
        )
    assert not Path("out").exists()


def test_python_rows_with_columns_named_like_trls_reward_arguments_are_renamed():
    """TRL failed in the first step with "multiple values for keyword argument 'prompts'" (fourth hunt)."""
    from grpo_trainer import as_grpo_dataset

    rows = [{"prompt": "q", "prompts": "P", "completions": "C", "chosen": "a"}]
    dataset = as_grpo_dataset(rows, "train", needs_length=False)
    assert dataset.column_names == ["prompt", "source_prompts", "source_completions", "chosen"]
