"""Reward models: a classifier scores completions as a TRL reward; a 2-step trained one serves as reward."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from models import ModelError
from reward_model import (
    REWARD_FUNCTION_NAME,
    conversation,
    get_reward_model_reward,
    load_reward_model,
    load_scoring_model,
    pairwise_accuracy,
    score_pairs,
)

PROMPTS = [
    [{"role": "user", "content": "What is 12 + 7?"}],
    [{"role": "user", "content": "Summarize the following post."}],
    [{"role": "system", "content": "yes"}, {"role": "user", "content": "hello world"}],
]
COMPLETIONS = [
    [{"role": "assistant", "content": "12 + 7 = 19"}],
    [{"role": "assistant", "content": "The capital of France is Paris. The capital of France is Paris."}],
    [{"role": "assistant", "content": "no"}],
]


def save_classifier(model_dir: Path, target: Path, num_labels: int = 1) -> Path:
    """The tiny causal model of conftest re-saved as a sequence classifier (random head) with its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return save_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


def direct_score(folder: Path, messages) -> float:
    """The classifier's logit for one conversation, computed without the reward module (no padding)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=ids["input_ids"]).logits[0, 0].item()


# --------------------------------------------------------------------------------------------------
# A classifier as reward


def test_classifier_scores_prompt_plus_completion_like_an_unpadded_forward(classifier_dir):
    reward = get_reward_model_reward(classifier_dir, device="cpu", batch_size=2)
    scores = reward(COMPLETIONS, prompts=PROMPTS)
    assert reward.__name__ == REWARD_FUNCTION_NAME
    expected = [direct_score(classifier_dir, p + c) for p, c in zip(PROMPTS, COMPLETIONS)]
    assert scores == pytest.approx(expected, abs=1e-5)  # batched, padded scoring = one sequence at a time
    assert len(set(scores)) == 3  # the prompt and the completion both reach the score


def test_batch_size_does_not_change_scores_and_the_model_loads_once(classifier_dir):
    one = get_reward_model_reward(classifier_dir, device="cpu", batch_size=1)
    loads = load_scoring_model.cache_info().misses
    three = get_reward_model_reward(classifier_dir, device="cpu", batch_size=3)
    assert load_scoring_model.cache_info().misses == loads  # same folder, same device: no second load
    assert one(COMPLETIONS, prompts=PROMPTS) == pytest.approx(three(COMPLETIONS, prompts=PROMPTS), abs=1e-5)


def test_plain_strings_and_the_prompt_column_are_accepted(classifier_dir):
    reward = get_reward_model_reward(classifier_dir, device="cpu")
    texts = [c[0]["content"] for c in COMPLETIONS]
    as_strings = reward(texts, prompts=[p[-1]["content"] for p in PROMPTS[:2]] + [PROMPTS[2]])
    from_column = reward(COMPLETIONS, prompt=PROMPTS)  # how --reward-preview passes the dataset's columns
    assert as_strings == pytest.approx(reward(COMPLETIONS, prompts=PROMPTS), abs=1e-5)
    assert from_column == pytest.approx(as_strings, abs=1e-5)


def test_pairwise_accuracy_counts_strict_wins_with_a_binomial_standard_error():
    stats = pairwise_accuracy([1.0, 2.0, 0.5, 3.0], [0.0, 2.0, 1.0, -1.0])
    assert stats["accuracy"] == 0.5 and stats["ties"] == 0.25 and stats["n"] == 4
    assert stats["stderr"] == pytest.approx(math.sqrt(0.25 / 4))
    assert stats["mean_margin"] == pytest.approx((1 + 0 - 0.5 + 4) / 4)


# --------------------------------------------------------------------------------------------------
# Errors: one line naming the path and the fix


def _no_template(classifier_dir: Path, target: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    AutoModelForSequenceClassification.from_pretrained(classifier_dir).save_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(target)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    return target


def _causal_adapter(model_dir: Path, target: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"])).save_pretrained(target)
    return target


ERROR_CASES = [
    # (what is given, builder of the folder, words the message must contain)
    ("missing folder", lambda m, c, t: t / "nope", ["no such folder", "train_reward_model.py"]),
    ("causal LM folder", lambda m, c, t: m, ["not a sequence classifier", "LlamaForCausalLM"]),
    ("two-label classifier", lambda m, c, t: save_classifier(m, t, num_labels=2), ["2 labels", "num_labels=1"]),
    ("tokenizer without chat template", lambda m, c, t: _no_template(c, t), ["no chat template", "chat_template"]),
    ("GRPO (causal) adapter", lambda m, c, t: _causal_adapter(m, t), ["CAUSAL_LM adapter", "not a classifier"]),
    ("empty folder", lambda m, c, t: t, ["no config.json or adapter_config.json"]),
]


@pytest.mark.parametrize(("case", "build", "words"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_unusable_reward_models_fail_with_one_line(case, build, words, tiny_model_dir, classifier_dir, tmp_path):
    folder = build(tiny_model_dir, classifier_dir, tmp_path)
    with pytest.raises(ModelError) as err:
        get_reward_model_reward(folder, device="cpu")
    message = str(err.value)
    assert "\n" not in message and str(folder) in message
    for word in words:
        assert word in message


# --------------------------------------------------------------------------------------------------
# Training a reward model, then using it as the reward


def write_pairs(path: Path, count: int = 40) -> Path:
    """Pairs with an easy signal: the chosen answer is the sum, the rejected one is off-topic."""
    rows = [
        {
            "prompt": f"What is {i % 9 + 1} + {i % 7}?",
            "chosen": f"{i % 9 + 1} + {i % 7} = {i % 9 + 1 + i % 7}",
            "rejected": "hello world, no",
        }
        for i in range(count)
    ]
    rows.append({"prompt": "What is 1 + 1?", "chosen": "2", "rejected": ""})  # no pair: dropped
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_training(model_dir: Path, data: Path, out: Path, **extra) -> dict:
    return {
        "model_name": str(model_dir),
        "dataset_name": str(data),
        "output_dir": str(out),
        "max_steps": 2,
        "eval_samples": 8,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 0.05,
        "lora_rank": 4,
        "logging_steps": 1,
        "save_steps": 2,
        "gradient_checkpointing": False,
        **extra,
    }


@pytest.fixture(scope="module")
def trained_reward_model(tiny_model_dir, tmp_path_factory):
    from train_reward_model import build_reward_model_config, main

    tmp = tmp_path_factory.mktemp("rm-run")
    config = build_reward_model_config(
        None, tiny_training(tiny_model_dir, write_pairs(tmp / "pairs.jsonl"), tmp / "rm")
    )
    return main(config), config


def test_two_step_training_saves_a_reward_model_with_its_head(trained_reward_model, tiny_model_dir):
    summary, _ = trained_reward_model
    folder = Path(summary["reward_model_dir"])
    assert summary["steps"] == 2 and not summary["interrupted"]
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as weights:
        assert any("score" in key for key in weights.keys())  # noqa: SIM118 - safe_open has no __iter__
    info = json.loads((folder / "reward_model.json").read_text())
    assert info["train_pairs"] + info["heldout_accuracy"]["n"] == 40  # 8 held out, the row without a pair dropped
    assert 0.0 <= info["heldout_accuracy"]["accuracy"] <= 1.0 and info["base_model"] == str(tiny_model_dir)
    assert (folder / "metrics.jsonl").is_file() and (folder / "run_config.json").is_file()
    assert summary["plot"] and Path(summary["plot"]).is_file()  # a reward model's curves: loss, accuracy


def test_the_trained_folder_serves_as_reward_and_reproduces_its_heldout_accuracy(trained_reward_model):
    from transformers import AutoModelForSequenceClassification

    from train_reward_model import load_pairs

    summary, config = trained_reward_model
    folder = summary["reward_model_dir"]
    reward = get_reward_model_reward(folder, device="cpu")
    _, heldout = load_pairs(config)
    completions = [[{"role": "assistant", "content": text}] for text in heldout["chosen"]]
    scores = reward(completions, prompts=list(heldout["prompt"]))
    assert len(scores) == len(heldout) and all(math.isfinite(s) for s in scores)
    chosen, rejected = score_pairs(load_reward_model(folder, "cpu"), heldout)
    saved = json.loads((Path(folder) / "reward_model.json").read_text())["heldout_scores"]
    assert chosen == pytest.approx(saved["chosen"], abs=1e-5)  # the saved head is the trained one
    assert rejected == pytest.approx(saved["rejected"], abs=1e-5)
    assert pairwise_accuracy(chosen, rejected) == pytest.approx(summary["heldout_accuracy"])
    base = AutoModelForSequenceClassification.from_pretrained(config.model_name, num_labels=1)
    untrained_first = base.score.weight.detach()
    trained_first = load_reward_model(folder, "cpu").model.score.weight.detach()
    assert not untrained_first.allclose(trained_first)


def test_grpo_trains_on_the_trained_reward_model_and_logs_its_score(trained_reward_model, tiny_model_dir, in_tmp_cwd):
    from conftest import tiny_cli_args
    from train_grpo import cli

    folder = trained_reward_model[0]["reward_model_dir"]
    out = in_tmp_cwd / "grpo"
    args = tiny_cli_args(tiny_model_dir, out, "--reward-model", folder, "--max-steps", "1", "--max-samples", "8")
    assert cli(args) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [m[f"rewards/{REWARD_FUNCTION_NAME}/mean"] for m in metrics if f"rewards/{REWARD_FUNCTION_NAME}/mean" in m]
    assert logged and all(math.isfinite(v) for v in logged)


def test_scoring_renders_pairs_exactly_as_reward_trainer_trained_on_them(tiny_model_dir, tmp_path):
    from reward_model import RewardModel
    from train_reward_model import build_reward_model_config, build_trainer, load_pairs

    data = write_pairs(tmp_path / "pairs.jsonl", count=12)
    config = build_reward_model_config(None, tiny_training(tiny_model_dir, data, tmp_path / "rm", eval_samples=4))
    train, heldout = load_pairs(config)
    trainer = build_trainer(config, train, heldout, [])
    scorer = RewardModel(trainer.model, trainer.processing_class)
    for row, tokenized in zip(train, trainer.train_dataset):
        assert scorer.token_ids(conversation(row["prompt"], row["chosen"])) == tokenized["chosen_ids"]
        assert scorer.token_ids(conversation(row["prompt"], row["rejected"])) == tokenized["rejected_ids"]


def test_conversation_appends_the_completion_as_the_assistant_turn():
    assert conversation("hi", "yo") == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert conversation(None, COMPLETIONS[2]) == COMPLETIONS[2]


# --------------------------------------------------------------------------------------------------
# Command line


def error_lines(cwd: Path) -> list[str]:
    return [line for line in (cwd / "grpo_training.log").read_text().splitlines() if " ERROR " in line]


@pytest.mark.parametrize(
    ("case", "args", "words"),
    [
        ("unknown config key", ["--config", "{config}"], ["unknown key(s) group_size"]),
        ("no pairs in the data", ["--custom-data", "{qa}", "--eval-samples", "0"], ["no training row has both"]),
        ("missing model folder", ["--model", "./no-such-model"], ["does not exist"]),
        # found by a fault hunt: TRL dropped every pair and the sampler raised a traceback
        ("every pair too long", ["--max-length", "3"], ["fits max_length 3", "--max-length"]),
        # found by a fault hunt: tracebacks (exit 1), and a "finished" reward model of 0 steps
        ("batch size 0", ["--batch-size", "0"], ["per_device_train_batch_size=0 must be a positive"]),
        ("negative learning rate", ["--learning-rate", "-1"], ["learning_rate=-1.0 must be a positive"]),
        ("unknown tracker", ["--report-to", "bogus"], ["report_to bogus: not a tracker"]),
        ("accumulation 0", ["--gradient-accumulation-steps", "0"], ["gradient_accumulation_steps=0"]),
        ("no epochs", ["--epochs", "0", "--max-steps", "-1"], ["num_train_epochs=0.0 must be a positive"]),
        ("output folder under a file", ["--output-dir", "{qa}/out"], ["a part of the path is a file"]),
    ],
)
def test_cli_bad_input_is_one_error_line_and_exit_2(case, args, words, in_tmp_cwd, tiny_model_dir):
    from train_reward_model import cli

    (in_tmp_cwd / "c.json").write_text(json.dumps({"group_size": 4}))
    qa = in_tmp_cwd / "qa.jsonl"
    qa.write_text(json.dumps({"question": "What is 1 + 1?", "answer": "2"}) + "\n")
    base = ["--model", str(tiny_model_dir), "--custom-data", str(write_pairs(in_tmp_cwd / "p.jsonl"))]
    base += ["--output-dir", str(in_tmp_cwd / "out"), "--max-steps", "1", "--eval-samples", "8"]
    given = [a.format(config=in_tmp_cwd / "c.json", qa=qa) for a in args]
    assert cli(base + given) == 2
    lines = error_lines(in_tmp_cwd)
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0]


def test_demo_statistics_and_checks():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "reward_model_demo", Path(__file__).parents[1] / "examples/reward_model_demo.py"
    )
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    stats = demo.paired(before=[0.0, 1.0, 0.0, 1.0], after=[1.0, 1.0, 1.0, 1.0])
    assert (stats["before"], stats["after"], stats["gain"]) == (0.5, 1.0, 0.5)
    assert stats["gain_se"] == pytest.approx(math.sqrt(1 / 3) / 2)  # stdev of [1, 0, 1, 0] over sqrt(4)
    completions = [[{"role": "assistant", "content": "51 + 13 = 64"}], "It is 64, not 63", "64 apples: 65"]
    assert demo.sum_correct(completions, total=["64", "64", "64"]) == [1.0, 0.0, 0.0]
    assert demo.word_count(completions) == [5.0, 5.0, 3.0]
