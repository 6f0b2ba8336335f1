"""The fault suite: bad inputs and faults thrown at the command line, one table row each.

Every case runs ``train_grpo.cli`` in this process (no model where ``--reward-preview`` reaches the fault, the
tiny random model where one is needed) and asserts the exit code, that no traceback reaches the terminal, that
the terminal has exactly one ERROR line (for a failure) naming the place (file and line, key, module, folder),
that ``./grpo_training.log`` has it too, and that a failed run leaves no new output folder behind.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_run_dir import make_checkpoint, make_run

from train_grpo import cli

PREVIEW = ["--reward-preview", "--reward-function", "length"]
DATA = ["--custom-data", "{tmp}/data.jsonl"]
GOOD_ROWS = [{"prompt": f"What is {i} + 1?", "chosen": str(i + 1), "rejected": str(i)} for i in range(8)]
TINY = ["--model", "{model}", "--batch-size", "4", "--num-generations", "4", "--gradient-accumulation-steps", "1"]
TINY += ["--max-completion-length", "8", "--lora-rank", "4", "--max-steps", "1", "--no-wandb"]


def jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


GOOD = jsonl(GOOD_ROWS)


@dataclass
class Case:
    """One fault: files to write, the command line, the exit code, and what the message must name."""

    id: str
    args: list[str]
    code: int = 2
    names: list[str] = field(default_factory=list)  # substrings of the ERROR (or, exit 0, WARNING) line
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    model: bool = False  # needs the tiny model
    patch: Callable | None = None  # (monkeypatch, tmp) -> None, for faults the machine cannot produce on demand
    xfail: str | None = None
    run_started: bool = False  # the fault comes after the run folder was opened: the folder stays, as interrupted


def preview(case_id: str, files: dict, names: list[str], code: int = 2, args=(), **kw) -> Case:
    """A data-file case: the rows go through loading and the reward preview (no model)."""
    return Case(case_id, [*PREVIEW, *DATA, *args], code, names, files, **kw)


def config_case(case_id: str, settings, names: list[str], **kw) -> Case:
    """A --config file case (a dict is written as JSON, a string as is)."""
    text = settings if isinstance(settings, str) else json.dumps(settings)
    return Case(
        case_id, [*PREVIEW, *DATA, "--config", "{tmp}/c.json"], 2, names, {"data.jsonl": GOOD, "c.json": text}, **kw
    )


def reward_module(case_id: str, source: str, names: list[str], code: int = 2, function: str = "score", **kw) -> Case:
    """A reward module case: ``rw_<id>.py`` holds ``source``; the preview imports and calls ``function``."""
    module = "rw_" + case_id.replace("-", "_")
    args = ["--reward-preview", *DATA, "--reward-function", f"{module}.{function}"]
    return Case(case_id, args, code, names, {"data.jsonl": GOOD, f"{module}.py": source}, **kw)


def reward_config(case_id: str, text: str, names: list[str], **kw) -> Case:
    args = [*PREVIEW, *DATA, "--reward-config", "{tmp}/r.json"]
    return Case(case_id, args, 2, names, {"data.jsonl": GOOD, "r.json": text}, **kw)


def model_case(case_id: str, model: str, names: list[str], files: dict | None = None) -> Case:
    """A --model case: a short training run of the tiny model's settings, pointed at ``model`` instead."""
    args = [*TINY, *DATA, *OUT, "--model", model]  # OUT: defined with the lifecycle cases, read when called
    return Case(case_id, args, 2, names, {"data.jsonl": GOOD, **(files or {})}, model=True)


CSV_OK = "prompt,chosen,rejected\nWhat is 1 + 1?,2,3\nWhat is 2 + 2?,4,5\n"
STREAM = ["--streaming", "--max-steps", "2"]


def _empty_saved_dataset(tmp: Path) -> None:
    from datasets import Dataset

    Dataset.from_list([{"prompt": "Q?", "chosen": "a"}]).select([]).save_to_disk(str(tmp / "saved"))


DATA_CASES = [
    Case("data-missing-file", [*PREVIEW, *DATA], 2, ["{tmp}/data.jsonl", "not found"]),
    # a pipe waited for a writer forever (streaming fault hunt, ninth session; also the cases below)
    Case("data-fifo", [*PREVIEW, *DATA], 2, ["data.jsonl", "a pipe"], setup=lambda t: os.mkfifo(t / "data.jsonl")),
    Case(
        "data-empty-saved-dataset",
        [*PREVIEW, "--custom-data", "{tmp}/saved"],
        2,
        ["saved", "has no rows"],
        setup=_empty_saved_dataset,
    ),
    Case(
        "data-broken-parquet-streamed",
        [*PREVIEW, "--custom-data", "{tmp}/data.parquet", *STREAM],
        2,
        ["data.parquet", "cannot be read as Parquet"],
        {"data.parquet": b"PAR1garbage"},
    ),
    preview(
        "data-streamed-column-added-later",
        {"data.jsonl": jsonl([{"prompt": "Q?", "chosen": "a"}, {"prompt": "R?", "chosen": "b", "meta": 1}])},
        ["data.jsonl:2", "meta", "first row"],
        args=STREAM,
    ),
    preview(
        "data-streamed-eval-samples-all-rows",
        {"data.jsonl": GOOD},
        ["eval_samples=8", "out of 8"],
        args=[*STREAM, "--eval-samples", "8"],
    ),
    Case("data-folder-named-jsonl", [*PREVIEW, *DATA], 2, ["data.jsonl"], setup=lambda t: (t / "data.jsonl").mkdir()),
    preview("data-empty-file", {"data.jsonl": ""}, ["data.jsonl", "empty"]),
    preview("data-bad-json-line", {"data.jsonl": GOOD + "{oops\n"}, ["data.jsonl:9"]),
    preview("data-list-row", {"data.jsonl": GOOD + "[1, 2]\n"}, ["data.jsonl:9"]),
    preview("data-no-prompt-column", {"data.jsonl": jsonl([{"question": "q", "x": 1}])}, ["data.jsonl", "question"]),
    preview("data-number-prompt", {"data.jsonl": jsonl([{"prompt": 5, "chosen": "a"}])}, ["data.jsonl", "'prompt'"]),
    preview("data-empty-prompt", {"data.jsonl": jsonl([{"prompt": "", "chosen": "a"}])}, ["data.jsonl", "'prompt'"]),
    preview("data-null-prompt", {"data.jsonl": jsonl([{"prompt": None, "chosen": "a"}])}, ["data.jsonl", "'prompt'"]),
    preview(
        "data-list-chosen", {"data.jsonl": jsonl([{"prompt": "q", "chosen": ["a", "b"]}])}, ["data.jsonl", "'chosen'"]
    ),
    preview(
        "data-no-assistant-turn",
        {"data.jsonl": jsonl([{"chosen": [{"role": "user", "content": "hi"}]}])},
        ["data.jsonl", "'chosen'"],
    ),
    preview(
        "data-prompt-ends-with-assistant",
        {"data.jsonl": jsonl([{"prompt": [{"role": "assistant", "content": "hi"}], "chosen": "a"}])},
        ["data.jsonl", "'prompt'"],
    ),
    preview(
        "data-hh-without-human-turn",
        {"data.jsonl": jsonl([{"chosen": "no turns here", "rejected": "none"}])},
        ["data.jsonl:1"],
    ),
    preview(
        "data-openbmb-number-response",
        {"data.jsonl": jsonl([{"instruction": "q", "completions": [{"response": 5}, {"response": 3}]}])},
        ["data.jsonl:1"],
    ),
    preview(
        "data-openbmb-completions-not-list",
        {"data.jsonl": jsonl([{"instruction": "q", "completions": "many"}])},
        ["data.jsonl", "'completions'"],
    ),
    preview(
        "data-summarize-number-post",
        {"data.jsonl": jsonl([{"info": {"post": 3}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}])},
        ["data.jsonl:1"],
    ),
    preview(
        "data-summarize-bad-choice",
        {"data.jsonl": jsonl([{"info": {"post": "p"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 7}])},
        ["data.jsonl", "'choice'"],
    ),
    preview("data-binary-garbage", {"data.jsonl": b"\xff\xfe\x00garbage\x80\n"}, ["data.jsonl"]),
    preview("data-bom-accepted", {"data.jsonl": "\ufeff" + GOOD}, [], code=0),
    preview(
        "data-gz-not-gzip", {"data.jsonl.gz": GOOD}, ["data.jsonl.gz"], args=["--custom-data", "{tmp}/data.jsonl.gz"]
    ),
    preview(
        "data-gz-corrupt",
        {"data.jsonl.gz": gzip.compress(GOOD.encode())[:40]},
        ["data.jsonl.gz"],
        args=["--custom-data", "{tmp}/data.jsonl.gz"],
    ),
    preview(
        "data-gz-accepted",
        {"data.jsonl.gz": gzip.compress(GOOD.encode())},
        [],
        code=0,
        args=["--custom-data", "{tmp}/data.jsonl.gz"],
    ),
    preview(
        "data-parquet-corrupt",
        {"d.parquet": b"PAR1 not really"},
        ["d.parquet"],
        args=["--custom-data", "{tmp}/d.parquet"],
    ),
    preview(
        "data-csv-unterminated-quote",
        {"d.csv": 'prompt,chosen\n"what,"a\n'},
        ["d.csv"],
        args=["--custom-data", "{tmp}/d.csv"],
    ),
    preview(
        "data-csv-latin1",
        {"d.csv": "prompt,chosen,rejected\nQu'est-ce qu'un caf\xe9?,a,b\n".encode("latin-1")},
        ["d.csv"],
        args=["--custom-data", "{tmp}/d.csv"],
    ),
    preview(
        "data-custom-file-with-subset",
        {"d.jsonl": GOOD},
        ["is a local file", "--dataset-subset"],
        args=["--custom-data", "{tmp}/d.jsonl", "--dataset-subset", "helpful-base"],
    ),
    preview(
        "data-unknown-role",
        {"d.jsonl": json.dumps({"prompt": [{"role": "hacker", "content": "hi"}], "chosen": "a"}) + "\n"},
        ["d.jsonl", "unknown role hacker", "user"],
        args=["--custom-data", "{tmp}/d.jsonl"],
    ),
    preview(
        "data-jsonl-utf16",  # a Windows "Unicode" save; the hint said latin1 (fault hunt)
        {"d.jsonl": '{"prompt": "What is 1+1?", "chosen": "2", "rejected": "3"}\n'.encode("utf-16")},
        ["d.jsonl", "iconv -f utf-16"],
        args=["--custom-data", "{tmp}/d.jsonl"],
    ),
    preview("data-csv-numbers-accepted", {"d.csv": CSV_OK}, [], code=0, args=["--custom-data", "{tmp}/d.csv"]),
    preview("data-csv-header-only", {"d.csv": "prompt,chosen\n"}, ["d.csv"], args=["--custom-data", "{tmp}/d.csv"]),
    preview(
        "data-unsupported-type", {"d.txt": "hello"}, ["d.txt", "unsupported"], args=["--custom-data", "{tmp}/d.txt"]
    ),
    preview("data-json-object", {"d.json": '{"prompt": 1}'}, ["d.json"], args=["--custom-data", "{tmp}/d.json"]),
    preview("data-json-list-of-strings", {"d.json": '["a", "b"]'}, ["d.json"], args=["--custom-data", "{tmp}/d.json"]),
    preview(
        "data-mixed-type-extra-column",
        {"data.jsonl": jsonl([{**GOOD_ROWS[0], "meta": 1}, {**GOOD_ROWS[1], "meta": "x"}])},
        ["data.jsonl:2", "'meta'"],
    ),
    preview("data-all-rows-bad-skipped", {"data.jsonl": "{bad\n{bad\n"}, ["data.jsonl"], args=["--skip-bad-rows"]),
    preview("data-eval-samples-too-many", {"data.jsonl": GOOD}, ["eval_samples"], args=["--eval-samples", "8"]),
    # second fault hunt: these read other data than the user gave, with exit 0
    Case(
        "data-arithmetic-with-dataset-path",
        [*PREVIEW, "--dataset", "arithmetic", "--dataset-path", "{tmp}/data.jsonl"],
        2,
        ["arithmetic dataset is generated", "--dataset-path", "--custom-data"],
        {"data.jsonl": GOOD},
    ),
    Case(
        "data-quick-test-with-dataset-path",
        [*PREVIEW, "--quick-test", "--dataset-path", "{tmp}/data.jsonl"],
        2,
        ["--dataset-path", "--custom-data PATH (also with --quick-test)"],
        {"data.jsonl": GOOD},
    ),
    Case(  # an hh-rlhf file read as the default ultrafeedback's copy: "no 'prompt'", without saying why
        "data-dataset-path-without-dataset",
        [*PREVIEW, "--dataset-path", "{tmp}/hh.jsonl"],
        2,
        ["hh.jsonl", "copy of --dataset ultrafeedback, the default", "--custom-data"],
        {"hh.jsonl": jsonl([{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "x"}])},
    ),
    Case(  # the real hh-rlhf sample given as summarize_from_feedback's copy was read, as hh-rlhf (streaming hunt)
        "data-hh-rlhf-file-as-openai-summarize",
        [*PREVIEW, "--dataset", "openai_summarize", "--dataset-path", "{tmp}/hh.jsonl.gz"],
        2,
        ["hh.jsonl.gz", "hh_rlhf row, not one of this dataset's layouts (summarize_openai, summarize_carper)"],
        {"hh.jsonl.gz": (Path(__file__).parent / "data" / "hh_rlhf_harmless_test_sample.jsonl.gz").read_bytes()},
    ),
    Case(
        "data-subset-with-local-copy",
        [*PREVIEW, "--dataset", "hh_rlhf", "--dataset-path", "{tmp}/data.jsonl", "--dataset-subset", "helpful-base"],
        2,
        ["--dataset-subset helpful-base", "Anthropic/hh-rlhf", "read whole"],
        {"data.jsonl": GOOD},
    ),
    Case(
        "data-carper-hub-id",
        [*PREVIEW, "--dataset", "CarperAI/openai_summarize_comparisons"],
        2,
        ["CarperAI/openai_summarize_comparisons", "--custom-data", "--dataset openai_summarize"],
    ),
    Case(
        "cli-config-given-twice",
        [*PREVIEW, *DATA, "--config", "{tmp}/a.json", "--config", "{tmp}/b.json"],
        2,
        ["--config given twice", "{tmp}/a.json"],
        {"data.jsonl": GOOD, "a.json": "{}", "b.json": "{}"},
    ),
    # the value came from a preset the user may not have read: the error says so (from the fault hunt)
    preview(
        "data-eval-samples-from-preset",
        {"data.jsonl": GOOD},
        ["eval_samples=200", "--eval-samples N", "preset 'production'"],
        args=["--production"],
    ),
    Case(
        "data-dataset-path-missing",
        [*PREVIEW, "--dataset", "hh_rlhf", "--dataset-path", "{tmp}/nope"],
        2,
        ["{tmp}/nope"],
    ),
    Case("data-unknown-hub-dataset", [*PREVIEW, "--dataset", "nobody/no-such-dataset"], 2, ["nobody/no-such-dataset"]),
    # fourth hunt (data and rewards): the last of two values silently won
    preview(
        "data-jsonl-key-twice",
        {"data.jsonl": GOOD + '{"prompt": "What is 1+1?", "chosen": "2", "chosen": "3"}\n'},
        ["data.jsonl:9", "'chosen' appears twice"],
    ),
    preview(
        "data-int-beyond-64-bits",
        {"data.jsonl": GOOD + jsonl([{**GOOD_ROWS[0], "id": 2**70}])},
        ["data.jsonl:9", "'id'", "beyond 64 bits"],
    ),
    preview(
        "data-nested-type-changes",
        {
            "data.jsonl": jsonl([{**row, "meta": {"a": 1}} for row in GOOD_ROWS])
            + jsonl([{**GOOD_ROWS[0], "meta": {"a": "x"}}])
        },
        ["data.jsonl:9", "'meta'"],
    ),
    preview(
        "data-json-array-truncated",
        {"d.json": json.dumps(GOOD_ROWS)[:-40]},
        ["d.json", "truncated"],
        args=["--custom-data", "{tmp}/d.json"],
    ),
    preview(
        "data-parquet-no-rows",
        {},
        ["d.parquet", "no rows"],
        args=["--custom-data", "{tmp}/d.parquet"],
        setup=lambda tmp: (
            __import__("datasets").Dataset.from_list(GOOD_ROWS).select([]).to_parquet(str(tmp / "d.parquet"))
        ),
    ),
    preview(  # TRL's conversational format: "unrecognised columns ['messages']" before
        "data-messages-column-accepted",
        {
            "data.jsonl": jsonl(
                [{"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]}] * 8
            )
        },
        [],
        code=0,
    ),
    Case(  # accuracy graded every row by keywords, said only at INFO
        "data-no-reference-warned",
        ["--reward-preview", *DATA, "--reward-function", "accuracy"],
        0,
        ["no row has a reference answer"],
        {"data.jsonl": jsonl([{"prompt": f"What is {i} + 1?"} for i in range(8)])},
    ),
    preview("data-utf16-without-bom", {"data.jsonl": GOOD.encode("utf-16-le")}, ["data.jsonl:1", "UTF-16"]),
    preview(
        "data-csv-column-twice",
        {"d.csv": "prompt,chosen,chosen\nWhat is 1+1?,2,3\n"},
        ["d.csv:1", "'chosen'"],
        args=["--custom-data", "{tmp}/d.csv"],
    ),
]

CONFIG_CASES = [
    Case("config-file-missing", [*PREVIEW, "--config", "{tmp}/none.json"], 2, ["{tmp}/none.json"]),
    config_case("config-invalid-json", "{oops", ["c.json"]),
    Case(
        "config-yaml-file",
        [*PREVIEW, *DATA, "--config", "{tmp}/c.yaml"],
        2,
        ["c.yaml", "config files are JSON, not YAML"],
        {"data.jsonl": GOOD, "c.yaml": "max_steps: 5\n"},
    ),
    Case(
        "config-is-a-folder",
        [*PREVIEW, *DATA, "--config", "{tmp}"],
        2,
        ["is a folder", "JSON file"],
        {"data.jsonl": GOOD},
    ),
    config_case("config-not-an-object", "[1, 2]", ["c.json"]),
    config_case("config-unknown-key", {"lerning_rate": 1e-5}, ["lerning_rate"]),
    config_case("config-max-steps-text", {"max_steps": "two"}, ["max_steps"]),
    config_case("config-seed-text", {"seed": "abc"}, ["seed"]),
    config_case("config-learning-rate-nan", '{"learning_rate": NaN}', ["learning_rate"]),
    config_case("config-learning-rate-inf", '{"learning_rate": Infinity}', ["learning_rate"]),
    config_case("config-warmup-steps-text", {"warmup_steps": "lots"}, ["warmup_steps"]),
    config_case("config-lora-dropout-range", {"lora_dropout": 1.5}, ["lora_dropout"]),
    config_case("config-gamma-discount", {"gamma": 0.9}, ["gamma"]),
    config_case("config-reward-config-name", {"reward_config_name": "nope"}, ["reward_config_name"]),
    config_case("config-reward-function-type", {"reward_function_type": "nope"}, ["reward_function_type"]),
    config_case("config-lora-targets-not-list", {"lora_target_modules": 5}, ["lora_target_modules"]),
    config_case("config-report-to-number", {"report_to": 5}, ["report_to"]),
    config_case("config-eval-steps-negative", {"eval_steps": -1}, ["eval_steps"]),
    config_case("config-reward-weights-text", {"reward_weights": ["a"]}, ["reward_weights", "a list of numbers"]),
    config_case("config-lr-scheduler-unknown", {"lr_scheduler_type": "zigzag"}, ["lr_scheduler_type", "cosine"]),
    # found by a fault hunt: each of these passed the checks and failed after the model was loaded, with exit 1
    config_case("config-loss-type-unknown", {"loss_type": "bogus"}, ["loss_type", "dr_grpo"]),
    config_case("config-scale-rewards-unknown", {"scale_rewards": "bogus"}, ["scale_rewards", "batch"]),
    config_case("config-cache-unknown", {"cache_implementation": "bogus"}, ["cache_implementation", "static"]),
    config_case("config-reward-weights-count", {"reward_weights": [1, 2, 3]}, ["reward_weights has 3", "length"]),
    config_case("config-lora-targets-empty", {"lora_target_modules": []}, ["lora_target_modules is empty"]),
    config_case("config-report-to-unknown", {"report_to": ["bogus"]}, ["report_to bogus", "tensorboard"]),
    Case(
        "config-no-wandb-and-report-to-wandb",
        [*PREVIEW, *DATA, "--no-wandb", "--report-to", "wandb"],
        2,
        ["--no-wandb"],
    ),
    config_case("config-num-iterations-0", {"num_iterations": 0}, ["num_iterations"]),
    config_case("config-lora-alpha-negative", {"lora_alpha": -4}, ["lora_alpha"]),
    config_case("config-reward-weights-all-0", {"reward_weights": [0]}, ["every reward weight is 0"]),
    config_case(
        "config-push-to-hub-offline",
        {"push_to_hub": True},
        ["push_to_hub", "HF_HUB_OFFLINE"],
        patch=lambda monkeypatch, tmp: monkeypatch.setenv("HF_HUB_OFFLINE", "1"),
    ),
    Case(  # a path written relative to the config file: read from the working directory, found beside the config
        "config-path-relative-to-config-file",
        [*PREVIEW, "--config", "{tmp}/cfg/c.json"],
        2,
        ["cfg/c.json", "dataset_name 'data.jsonl'", "{tmp}/cfg/data.jsonl"],
        {"cfg/data.jsonl": GOOD, "cfg/c.json": json.dumps({"dataset_name": "data.jsonl"})},
    ),
    config_case("config-liger-not-installed", {"use_liger_kernel": True}, ["use_liger_kernel", "liger-kernel"]),
    config_case("config-vllm-not-installed", {"use_vllm": True}, ["use_vllm", "vllm"]),
    Case("config-num-generations-1", [*PREVIEW, *DATA, "--num-generations", "1"], 2, ["num_generations"]),
    Case("config-batch-size-0", [*PREVIEW, *DATA, "--batch-size", "0"], 2, ["per_device_train_batch_size"]),
    Case("config-learning-rate-negative", [*PREVIEW, *DATA, "--learning-rate", "-1"], 2, ["learning_rate"]),
    Case("config-completion-length-0", [*PREVIEW, *DATA, "--max-completion-length", "0"], 2, ["max_completion_length"]),
    Case("config-epochs-negative", [*PREVIEW, *DATA, "--epochs", "-1"], 2, ["num_train_epochs"]),
    Case("config-lora-rank-0", [*PREVIEW, *DATA, "--lora-rank", "0"], 2, ["lora_rank"]),
    Case(  # a batch of no whole groups is filled up to one (tests/test_config.py); a generation batch given is not
        "config-generation-batch-not-divisible",
        [*DATA, "--generation-batch-size", "8", "--num-generations", "3"],
        2,
        ["generation_batch_size (8) must be divisible by num_generations (3)"],
    ),
    Case("config-backend-unknown", [*PREVIEW, *DATA, "--backend", "bogus"], 2, ["--backend"]),
    Case("config-max-steps-not-int", [*PREVIEW, *DATA, "--max-steps", "two"], 2, ["--max-steps"]),
    Case("config-reward-name-unknown", [*PREVIEW, *DATA, "--reward-function", "bogus"], 2, ["bogus"]),
    config_case("config-inline-reward-config-bad", {"reward_config": {"foo": {}}}, ["c.json", "unknown section 'foo'"]),
    config_case("config-key-twice", '{"learning_rate": 1e-5, "learning_rate": 2e-5}', ["c.json", "'learning_rate'"]),
    config_case("config-reward-weights-nan", '{"reward_weights": [NaN]}', ["c.json", "reward_weights"]),
]

REWARD_CASES = [
    Case(
        "reward-module-missing",
        ["--reward-preview", *DATA, "--reward-function", "no_such_mod.fn"],
        2,
        ["no_such_mod"],
        {"data.jsonl": GOOD},
    ),
    reward_module(
        "reward-syntax-error", "def score(completions, **kw)\n    return [1.0]\n", ["rw_reward_syntax_error", "line 1"]
    ),
    reward_module(
        "reward-import-error", "import no_such_dependency_xyz\n", ["rw_reward_import_error", "no_such_dependency_xyz"]
    ),
    reward_module(
        "reward-raises-at-import", "raise RuntimeError('bad setup')\n", ["rw_reward_raises_at_import", "bad setup"]
    ),
    reward_module("reward-exits-at-import", "raise SystemExit(3)\n", ["rw_reward_exits_at_import"]),
    reward_module("reward-function-missing", "def other(completions, **kw):\n    return []\n", ["score"]),
    reward_module("reward-not-callable", "score = 3\n", ["score"]),
    # found by a fault hunt: these failed on every call and the run trained on zero rewards, exit 0
    reward_module(
        "reward-without-kwargs", "def score(completions):\n    return [1.0]\n", ["takes (completions)", "**kwargs"]
    ),
    reward_module("reward-is-a-class", "class score:\n    pass\n", ["is a class", "**kwargs"]),
    reward_module(
        "reward-raises",
        "def score(completions, **kw):\n    raise ValueError('broken reward')\n",
        ["score", "broken reward"],
        code=0,
    ),
    reward_module(
        "reward-system-exit",
        "def score(completions, **kw):\n    raise SystemExit(3)\n",
        ["score", "SystemExit"],
        code=0,
    ),
    reward_module(
        "reward-wrong-count",
        "def score(completions, **kw):\n    return [1.0]\n",
        ["score"],
        code=0,
    ),
    reward_module(
        "reward-returns-text",
        "def score(completions, **kw):\n    return ['high' for _ in completions]\n",
        ["score"],
        code=0,
    ),
    reward_module(
        "reward-returns-nan",
        "def score(completions, **kw):\n    return [float('nan') for _ in completions]\n",
        ["score"],
        code=0,
    ),
    reward_module(  # finite in Python, inf in TRL's float32 rewards: the logged mean was inf, without a word
        "reward-returns-huge",
        "def score(completions, **kw):\n    return [1e300 for _ in completions]\n",
        ["score", "float32"],
        code=0,
    ),
    reward_module(
        "reward-returns-none",
        "def score(completions, **kw):\n    return [None for _ in completions]\n",
        ["score", "None"],
        code=0,
    ),
    reward_module(
        "reward-returns-scalar",
        "def score(completions, **kw):\n    return 1.0\n",
        ["score"],
        code=0,
    ),
    Case(
        "reward-sleeps-past-timeout",
        ["--reward-preview", *DATA, "--reward-function", "rw_sleeps.score", "--config", "{tmp}/c.json"],
        0,
        ["score", "reward_timeout"],
        {
            "data.jsonl": GOOD,
            "c.json": json.dumps({"reward_timeout": 0.5}),
            "rw_sleeps.py": "import time\n\ndef score(completions, **kw):\n    time.sleep(3)\n    return [1.0] * 16\n",
        },
    ),
    reward_config("reward-config-invalid-json", "{oops", ["r.json"]),
    reward_config("reward-config-unknown-key", json.dumps({"lenght": {}}), ["r.json", "lenght"]),
    reward_config("reward-config-weight-text", json.dumps({"length": {"weight": "heavy"}}), ["r.json", "weight"]),
    reward_config("reward-config-weight-nan", '{"length": {"weight": NaN}}', ["r.json", "length.weight"]),
    reward_config("reward-config-keywords-numbers", '{"accuracy": {"correct_keywords": [1, 2]}}', ["r.json"]),
    Case(
        "reward-config-missing",
        [*PREVIEW, *DATA, "--reward-config", "{tmp}/none.json"],
        2,
        ["{tmp}/none.json"],
        {"data.jsonl": GOOD},
    ),
]


def _live_run(tmp: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    make_run(tmp / "out", "running", pid=process.pid)
    _LIVE.append(process)


def _as_reward_model(run: Path) -> None:
    """The run's adapters (final and checkpoints) marked as a reward model's, as train_reward_model.py saves them."""
    for folder in (run, *run.glob("checkpoint-*")):
        (folder / "adapter_config.json").write_text(json.dumps({"task_type": "SEQ_CLS", "r": 4}))


_LIVE: list[subprocess.Popen] = []
OUT = ["--output-dir", "{tmp}/out"]
LIFECYCLE_CASES = [
    Case(
        "run-finished-no-overwrite",
        [*DATA, *OUT],
        2,
        ["{tmp}/out", "finished run", "--overwrite"],
        {"data.jsonl": GOOD},
        setup=lambda t: make_run(t / "out", "finished"),
    ),
    Case(
        "run-interrupted-no-resume",
        [*DATA, *OUT],
        2,
        ["{tmp}/out", "--resume-from-checkpoint latest"],
        {"data.jsonl": GOOD},
        setup=lambda t: make_run(t / "out", "interrupted"),
    ),
    Case(
        "run-in-progress",
        [*DATA, *OUT, "--overwrite"],
        2,
        ["{tmp}/out", "in use"],
        {"data.jsonl": GOOD},
        setup=_live_run,
    ),
    Case("run-foreign-files", [*DATA, *OUT], 2, ["{tmp}/out", "not a run"], {"data.jsonl": GOOD, "out/notes.txt": "x"}),
    # from the run-lifecycle fault hunt (seventh session): each went on and wrote into another run's folder
    Case(
        "run-eval-only-in-progress",
        [*DATA, *OUT, "--eval-only"],
        2,
        ["{tmp}/out", "in use"],
        {"data.jsonl": GOOD},
        setup=_live_run,
    ),
    Case(
        "run-output-dir-is-a-checkpoint",  # the advice was --overwrite, which moved the checkpoint aside
        [*DATA, "--output-dir", "{tmp}/out/checkpoint-4", "--overwrite"],
        2,
        ["{tmp}/out/checkpoint-4", "is a checkpoint of the run in", "--resume-from-checkpoint"],
        {"data.jsonl": GOOD},
        setup=lambda t: make_run(t / "out", "interrupted"),
    ),
    Case(
        "run-resume-a-reward-models-checkpoint",  # it rewrote that run's run_config.json, then failed mid-load
        [*DATA, *OUT, "--resume-from-checkpoint", "latest"],
        2,
        ["{tmp}/out/checkpoint-4", "a reward model's checkpoint", "train_reward_model.py"],
        {"data.jsonl": GOOD},
        setup=lambda t: _as_reward_model(make_run(t / "out", "interrupted")),
    ),
    Case(
        "run-eval-only-on-a-reward-model",  # was a line about unknown keys in its run_config.json
        [*DATA, *OUT, "--eval-only"],
        2,
        ["{tmp}/out", "holds a reward model", "--reward-model"],
        {"data.jsonl": GOOD},
        setup=lambda t: _as_reward_model(make_run(t / "out", "finished")),
    ),
    # found by a fault hunt: --overwrite moved the user's working directory (data and notes) to <dir>.old-<time>
    Case(
        "run-output-dir-is-the-working-directory",
        [*DATA, "--output-dir", "{tmp}", "--overwrite"],
        2,
        ["{tmp}", "is the working directory"],
        {"data.jsonl": GOOD, "notes.txt": "x"},
    ),
    Case("run-output-dir-dot", [*DATA, "--output-dir", "."], 2, ["working directory"], {"data.jsonl": GOOD}),
    Case(
        "run-overwrite-would-move-the-data",
        [*DATA, "--output-dir", "{tmp}/d", "--custom-data", "{tmp}/d/data.jsonl", "--overwrite"],
        2,
        ["would move the data", "{tmp}/d/data.jsonl"],
        {"d/data.jsonl": GOOD},
    ),
    Case(
        "run-resume-latest-nothing",
        [*DATA, *OUT, "--resume-from-checkpoint", "latest"],
        2,
        ["{tmp}/out"],
        {"data.jsonl": GOOD},
    ),
    Case(
        "run-resume-missing-path",
        [*DATA, *OUT, "--resume-from-checkpoint", "{tmp}/nowhere/checkpoint-3"],
        2,
        ["{tmp}/nowhere/checkpoint-3", "not a complete checkpoint"],
        {"data.jsonl": GOOD},
    ),
    Case(
        "run-resume-damaged",
        [*DATA, *OUT, "--resume-from-checkpoint", "{tmp}/out/checkpoint-4"],
        2,
        ["{tmp}/out/checkpoint-4", "optimizer.pt"],
        {"data.jsonl": GOOD},
        setup=lambda t: (make_run(t / "out", "interrupted"), (t / "out/checkpoint-4/optimizer.pt").unlink()),
    ),
    Case(
        "run-resume-fsdp-checkpoint-in-one-process",  # accelerate launch (FSDP) first, then plain python
        [*DATA, *OUT, "--resume-from-checkpoint", "latest"],
        2,
        ["{tmp}/out/checkpoint-4", "written under FSDP", "--init-adapter"],
        {"data.jsonl": GOOD},
        setup=lambda t: (
            make_run(t / "out", "interrupted"),
            (t / "out/checkpoint-4/optimizer.pt").rename(t / "out/checkpoint-4/optimizer.bin"),
            (t / "out/checkpoint-4/pytorch_model_fsdp.bin").write_bytes(b"m"),
        ),
    ),
    Case(
        "run-resume-latest-all-damaged",
        [*DATA, *OUT, "--resume-from-checkpoint", "latest"],
        2,
        ["{tmp}/out", "no complete checkpoint"],
        {"data.jsonl": GOOD},
        setup=lambda t: (
            make_run(t / "out", "interrupted", steps=(2,)),
            (t / "out/checkpoint-2/optimizer.pt").unlink(),
        ),
    ),
    Case(
        "run-foreign-checkpoint-into-finished",
        [*DATA, *OUT, "--resume-from-checkpoint", "{tmp}/a/checkpoint-4"],
        2,
        ["{tmp}/a/checkpoint-4", "belongs to the run in"],
        {"data.jsonl": GOOD},
        setup=lambda t: (make_run(t / "a", "interrupted"), make_run(t / "out", "finished")),
    ),
    Case(
        "run-overwrite-and-resume",
        [*DATA, *OUT, "--overwrite", "--resume-from-checkpoint", "latest"],
        2,
        ["{tmp}/out", "pass only one"],
        {"data.jsonl": GOOD},
        setup=lambda t: make_run(t / "out", "interrupted"),
    ),
    Case(
        "run-resume-finished",
        [*DATA, *OUT, "--resume-from-checkpoint", "latest"],
        2,
        ["{tmp}/out", "finished run", "--max-steps"],
        {"data.jsonl": GOOD},
        setup=lambda t: make_run(t / "out", "finished", steps=(4, 8)),
    ),
    Case("run-output-dir-is-file", [*DATA, *OUT], 2, ["{tmp}/out", "is a file"], {"data.jsonl": GOOD, "out": "x"}),
    Case(  # was "unexpected error FileExistsError", exit 1, after the model loaded (fault hunt)
        "run-output-dir-dangling-link",
        [*DATA, *OUT],
        2,
        ["{tmp}/out", "is a link to", "does not exist"],
        {"data.jsonl": GOOD},
        setup=lambda t: (t / "out").symlink_to(t / "gone"),
    ),
    Case(
        "run-zero-steps",
        [*TINY, *DATA, *OUT, "--batch-size", "16", "--max-samples", "3"],
        2,
        ["3 prompts", "--batch-size"],
        {"data.jsonl": GOOD},
        model=True,
    ),
    Case(
        "run-resume-other-lora-rank",
        [*TINY, *DATA, *OUT, "--lora-rank", "8", "--resume-from-checkpoint", "latest"],
        2,
        ["r=4", "--lora-rank 4"],
        {"data.jsonl": GOOD},
        model=True,
        setup=lambda t: _interrupted_tiny_run(t, base=_MODEL_DIR[0]),
    ),
    Case(
        "run-resume-other-model",
        [*TINY, *DATA, *OUT, "--resume-from-checkpoint", "latest"],
        2,
        ["was trained on", "elsewhere/model"],
        {"data.jsonl": GOOD},
        model=True,
        setup=lambda t: _interrupted_tiny_run(t, base="elsewhere/model"),
    ),
    Case(
        "run-init-adapter-of-another-rank",  # found by a fault hunt: torch's 30-line size-mismatch block, exit 1
        [*TINY, *DATA, *OUT, "--lora-rank", "8", "--init-adapter", "{tmp}/adapter"],
        2,
        ["{tmp}/adapter", "does not fit this model", "--lora-rank 4"],
        {"data.jsonl": GOOD},
        model=True,
        setup=lambda t: _rank_4_adapter(t / "adapter", _MODEL_DIR[0]),
    ),
    Case(
        "run-reward-raises-in-training",
        [*TINY, *DATA, *OUT, "--reward-function", "rw_train_raises.score"],
        0,
        ["score"],
        {"data.jsonl": GOOD, "rw_train_raises.py": "def score(completions, **kw):\n    raise KeyError(1)\n"},
        model=True,
    ),
]

ENV_CASES = [
    Case(  # the line was printed bare (no ERROR, not in ./grpo_training.log): the handlers had gone (fault hunt)
        "env-eval-only-run-log-unwritable",
        [*TINY, *DATA, *OUT, "--eval-only"],
        2,
        ["{tmp}/out/grpo_training.log", "permission denied"],
        {"data.jsonl": GOOD},
        setup=lambda t: make_run(t / "out", "interrupted"),  # no final adapter: the base model is scored
        model=True,
        patch=lambda mp, t: _fail_on_log_file(mp, t / "out"),
        run_started=True,
    ),
    Case(
        "env-read-only",
        [*TINY, *DATA, *OUT],
        2,
        ["{tmp}/out", "read-only"],
        {"data.jsonl": GOOD},
        model=True,
        patch=lambda mp, t: _fail_on_mkdir(mp, t / "out", errno.EROFS),
    ),
    Case(
        "env-disk-full",
        [*TINY, *DATA, *OUT],
        2,
        ["disk is full"],
        {"data.jsonl": GOOD},
        model=True,
        patch=lambda mp, t: _fail_on_write(mp, "run_state.json", errno.ENOSPC),
    ),
    Case(
        "env-disk-full-in-torch-save",  # torch's writer says RuntimeError("... file write failed"), no errno
        [*TINY, *DATA, *OUT],
        2,
        ["checkpoint", "disk is full"],
        {"data.jsonl": GOOD},
        model=True,
        patch=lambda mp, t: _fail_torch_save(mp),
        run_started=True,
    ),
    Case(
        "env-permission-denied",
        [*TINY, *DATA, *OUT],
        2,
        ["{tmp}/out", "permission denied"],
        {"data.jsonl": GOOD},
        model=True,
        patch=lambda mp, t: _fail_on_mkdir(mp, t / "out", errno.EACCES),
    ),
    Case(
        "env-parent-is-a-file",
        [*TINY, *DATA, "--output-dir", "{tmp}/f/out"],
        2,
        ["{tmp}/f/out"],
        {"data.jsonl": GOOD, "f": "x"},
        model=True,
    ),
    Case(
        "env-unexpected-crash",
        [*PREVIEW, *DATA],
        1,
        ["RuntimeError", "grpo_training.log"],
        {"data.jsonl": GOOD},
        patch=lambda mp, t: mp.setattr("train_grpo.load_data", _boom),
    ),
    model_case("env-hub-model-offline", "nobody/no-such-model", ["nobody/no-such-model", "could not be loaded"]),
    Case(
        "env-unsloth-without-cuda",
        [*TINY, *DATA, *OUT, "--backend", "unsloth"],
        2,
        ["unsloth", "CUDA"],
        {"data.jsonl": GOOD},
        model=True,
    ),
    # found by the second fault hunt: real mistakes with model folders (each failed late, with exit 1 or a vague line)
    model_case(
        "env-model-is-a-lora-adapter",
        "{tmp}/adapter",
        ["is a LoRA adapter", "--model base/model --init-adapter {tmp}/adapter"],
        {"adapter/adapter_config.json": json.dumps({"base_model_name_or_path": "base/model"})},
    ),
    model_case(
        "env-model-without-tokenizer",
        "{tmp}/model",
        ["{tmp}/model", "no tokenizer files"],
        {"model/config.json": "{}", "model/model.safetensors": b"\0" * 16},
    ),
    model_case(
        "env-model-weights-are-lfs-pointers",
        "{tmp}/model",
        ["model.safetensors is a Git LFS pointer", "git lfs pull"],
        {
            "model/config.json": "{}",
            "model/tokenizer.json": "{}",
            "model/model.safetensors": "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n",
        },
    ),
    # without a hub it was "hf download llama3.1-8b"; with one, 77 s of retries first
    model_case("env-model-short-name-typo", "llama3.1-8b", ["'llama3.1-8b'", "did you mean llama-3.1-8b"]),
    model_case(
        "env-model-is-a-gguf-file",
        "{tmp}/m.gguf",
        ["{tmp}/m.gguf is a GGUF file", "saved HF model"],
        {"m.gguf": b"GGUF\0\0\0\0"},
    ),
    model_case("env-model-folder-missing", "{tmp}/no-model", ["{tmp}/no-model"]),
]

_MODEL_DIR: list[str] = []


def _interrupted_tiny_run(tmp: Path, base: str) -> None:
    """An interrupted run whose checkpoint has a rank-4 adapter of ``base``."""
    run = make_run(tmp / "out", "interrupted", steps=())
    checkpoint = make_checkpoint(run, 1, max_steps=1)
    config = json.loads((checkpoint / "adapter_config.json").read_text())
    (checkpoint / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base}))


def _rank_4_adapter(folder: Path, base: str) -> None:
    """A real rank-4 LoRA adapter of ``base`` (PEFT's own save), as a finished run leaves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules="all-linear"))
    model.save_pretrained(folder)


def _boom(*args, **kwargs):
    raise RuntimeError("a bug")


def _fail_on_mkdir(monkeypatch, target: Path, code: int) -> None:
    real = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if Path(self) == target:
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)


def _fail_on_write(monkeypatch, name: str, code: int) -> None:
    real = pathlib.Path.write_text

    def write_text(self, *args, **kwargs):
        if name in self.name:
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def _fail_on_log_file(monkeypatch, folder: Path) -> None:
    """A log file in ``folder`` that cannot be opened (the suite runs as root, for whom permissions do not fail)."""
    import logging

    real = logging.FileHandler.__init__

    def init(self, filename, *args, **kwargs):
        if Path(filename).parent == folder.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(filename))
        real(self, filename, *args, **kwargs)

    monkeypatch.setattr(logging.FileHandler, "__init__", init)


def _fail_torch_save(monkeypatch) -> None:
    import torch

    def save(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:664] PytorchStreamWriter failed writing file data/0: "
            "file write failed"
        )

    monkeypatch.setattr(torch, "save", save)


CASES = DATA_CASES + CONFIG_CASES + REWARD_CASES + LIFECYCLE_CASES + ENV_CASES


def test_the_suite_is_large_enough():
    assert len(CASES) >= 80 and len({case.id for case in CASES}) == len(CASES)


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
def test_fault(case: Case, tmp_path, monkeypatch, capsys, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    _MODEL_DIR[:] = [str(tiny_model_dir)]
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if case.setup:
        case.setup(tmp_path)
    if case.patch:
        case.patch(monkeypatch, tmp_path)
    out_existed = (tmp_path / "out").exists()
    args = [arg.format(tmp=tmp_path, model=tiny_model_dir) for arg in case.args]
    if "--output-dir" not in args:
        args += ["--output-dir", str(tmp_path / "out")]
    try:
        code = _run(args)
    finally:
        for process in _LIVE:
            process.kill()
            process.wait()
        _LIVE.clear()
    captured = capsys.readouterr()
    terminal = captured.out + captured.err
    assert "Traceback" not in terminal, terminal[-3000:]
    assert code == case.code, terminal[-3000:]
    names = [name.format(tmp=tmp_path) for name in case.names]
    if case.code:
        errors = [line for line in captured.err.splitlines() if " ERROR " in line or line.startswith("ERROR ")]
        assert len(errors) == 1, terminal[-3000:]
        for name in names:
            assert name in errors[0], f"{name!r} not in {errors[0]!r}"
        if not errors[0].startswith("ERROR "):  # argparse's errors come before logging starts
            assert errors[0].split(" ERROR ", 1)[1] in (tmp_path / "grpo_training.log").read_text()
        if not out_existed and not case.run_started:
            assert not (tmp_path / "out").exists(), "a failed run left a new output folder behind"
    elif names:
        warnings = [line for line in captured.err.splitlines() if " WARNING " in line]
        assert any(all(name in line for name in names) for line in warnings), terminal[-3000:]


def _run(args: list[str]) -> int:
    """``cli(args)``'s exit code; argparse's usage errors exit through SystemExit."""
    try:
        return cli(args)
    except SystemExit as stop:
        return stop.code
