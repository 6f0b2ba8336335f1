"""The loader on real public files of the named datasets (samples in tests/data, sources in its README).

Row counts, converted/skipped tallies and the quirky real rows are asserted; a named source tolerates a few
bad rows and no more; columns named like TRL's reward arguments are renamed so that rewards can be called the
way GRPOTrainer calls them; the slow tier trains 2 steps through the CLI on real-schema files.
"""

from __future__ import annotations

import gzip
import inspect
import json
import re
import shutil

import pytest

from conftest import ROOT, run_train_grpo
from data_loader import (
    CHOSEN,
    MAX_BAD_SHARE,
    PROMPT,
    REJECTED,
    RESERVED_COLUMNS,
    DataError,
    load_grpo_dataset,
)

DATA = ROOT / "tests" / "data"
HH_SAMPLE = DATA / "hh_rlhf_harmless_test_sample.jsonl.gz"  # 108 rows of anthropics/hh-rlhf harmless-base/test
UF_FLAT_SAMPLE = DATA / "ultrafeedback_binarized_flat_sample.jsonl"  # 40 UltraFeedback binarized rows
OPENBMB_SAMPLE = DATA / "openbmb_pipeline_truthful_qa.json"  # 10 rows of the openbmb/UltraFeedback schema
SUMMARIZE_ROW = DATA / "summarize_from_feedback_readme_row.jsonl"  # the dataset authors' example comparison
CARPER_SAMPLE = DATA / "carperai_openai_summarize_comparisons_sample.jsonl"  # 40 CarperAI comparison rows
UF_MESSAGES_ROW = DATA / "ultrafeedback_binarized_train_prefs_row0.json"  # train_prefs row 0, message lists


def roles(prompt):
    return [message["role"] for message in prompt]


def test_every_real_hh_rlhf_row_converts():
    dataset = load_grpo_dataset("hh_rlhf", dataset_path=str(HH_SAMPLE))
    assert len(dataset) == 108
    for prompt in dataset[PROMPT]:
        assert prompt[-1]["role"] == "user" and prompt[-1]["content"].strip()
        assert all(a != b for a, b in zip(roles(prompt), roles(prompt)[1:]))  # turns alternate
    assert sum(not text for text in dataset[CHOSEN]) == 4  # source lines 87, 517, 926, 1104: empty reply


def test_real_hh_rows_that_aborted_the_load_before():
    """Rows 1255 and 1689 of harmless-base/test: chosen and rejected part before the last turn, a marker
    without the blank line, and a reply that itself starts with "Human:"."""
    dataset = load_grpo_dataset("hh_rlhf", dataset_path=str(HH_SAMPLE))
    drag, burglary = dataset[104], dataset[105]  # sample positions of source lines 1255 and 1689
    assert drag[PROMPT][-1]["content"] == "Isn't that drag kings?" and len(drag[PROMPT]) == 3
    assert drag[CHOSEN].startswith("No. Men who impersonate stereotypical women are called drag kings.")
    assert drag[REJECTED].startswith("A drag king is the opposite of a drag queen")
    assert burglary[CHOSEN].startswith("Human: I think there's an easier way")
    assert burglary[REJECTED].startswith("I'd suggest that you do it between 3 AM and 7 AM.")


def real_hh_lines() -> list[str]:
    with gzip.open(HH_SAMPLE, "rt", encoding="utf-8") as handle:
        return handle.readlines()


@pytest.mark.parametrize(("bad_lines", "fails"), [(1, False), (3, True)])
def test_named_source_skips_a_few_bad_rows_and_no_more(tmp_path, caplog, bad_lines, fails):
    lines = real_hh_lines()
    bad = ['{"chosen": "truncated', '{"chosen": 5, "rejected": "x"}', '{"chosen": "Hi", "rejected": "Ho"}']
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(lines[:50]) + "\n".join(bad[:bad_lines]) + "\n" + "".join(lines[50:]), encoding="utf-8")
    total = len(lines) + bad_lines
    assert (bad_lines / total > MAX_BAD_SHARE) == fails
    if fails:
        with pytest.raises(DataError) as err:
            load_grpo_dataset("hh_rlhf", dataset_path=str(path))
        message = str(err.value)
        assert f"3 of the first {total} rows cannot be converted" in message and "--skip-bad-rows" in message
        assert "1 x malformed JSON" in message and "1 x 'chosen' must be text, got a number" in message
    else:
        assert len(load_grpo_dataset("hh_rlhf", dataset_path=str(path))) == len(lines)
        assert "hh.jsonl:51: malformed JSON" in caplog.text
        assert f"converted {len(lines)} of {total} rows, skipped 1 (1 x malformed JSON)" in caplog.text


def test_own_file_stays_strict_and_skip_bad_rows_skips_all(tmp_path):
    path = tmp_path / "mine.jsonl"
    parted = {"chosen": "\n\nHuman: Hi\n\nAssistant: A", "rejected": "\n\nHuman: Ho\n\nAssistant: B"}
    path.write_text("".join(real_hh_lines()[:20]) + json.dumps(parted) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mine\.jsonl:21: 'chosen' and 'rejected' differ before the first Assistant"):
        load_grpo_dataset(str(path))
    assert len(load_grpo_dataset(str(path), skip_bad_rows=True)) == 20


def test_real_ultrafeedback_binarized_rows():
    dataset = load_grpo_dataset("ultrafeedback", dataset_path=str(UF_FLAT_SAMPLE))
    assert len(dataset) == 40 and all(dataset[CHOSEN]) and all(dataset[REJECTED])
    assert dataset[0][PROMPT][0]["content"].startswith("Write a Java program that prompts the user")
    assert dataset[0]["metadata"] == {"score_chosen": 9.0, "score_rejected": 7.0}


def test_real_summarize_from_feedback_comparison():
    """The authors' own example row: the human chose summaries[1] (the reference), so it is the chosen answer."""
    raw = json.loads(SUMMARIZE_ROW.read_text())
    dataset = load_grpo_dataset("openai_summarize", dataset_path=str(SUMMARIZE_ROW))
    assert len(dataset) == 1 and raw["choice"] == 1
    row = dataset[0]
    text = row[PROMPT][0]["content"]
    assert "SUBREDDIT: r/legaladvice" in text and "TITLE: Anybody with knowledge of the Dutch law" in text
    assert text.rstrip().endswith(raw["info"]["post"].strip())
    assert row[CHOSEN] == raw["summaries"][1]["text"].strip() and row[CHOSEN].startswith("we suspect other party")
    assert row[REJECTED] == raw["summaries"][0]["text"].strip()
    # the same file as a user's own data is recognised by its columns
    own = load_grpo_dataset(str(SUMMARIZE_ROW))[0]
    assert (own[PROMPT], own[CHOSEN], own[REJECTED]) == (row[PROMPT], row[CHOSEN], row[REJECTED])


def test_real_carper_summarize_comparisons_rows():
    """The published rows' prompt is the post header and post, without the card's closing 'TL;DR:', and every
    answer starts with 'TL;DR:': they were read as plain preference rows, 'TL;DR:' kept in the answers."""
    raw = [json.loads(line) for line in CARPER_SAMPLE.read_text().splitlines()]
    assert not any(row[PROMPT].rstrip().endswith("TL;DR:") for row in raw)  # the file is as published
    named = load_grpo_dataset("openai_summarize", dataset_path=str(CARPER_SAMPLE))
    own = load_grpo_dataset(str(CARPER_SAMPLE))  # the same file as a user's own data
    for dataset in (named, own):
        assert len(dataset) == 40
        assert not any(answer.upper().startswith("TL;DR") for answer in [*dataset[CHOSEN], *dataset[REJECTED]])
        text = dataset[0][PROMPT][0]["content"]
        assert "SUBREDDIT: r/relationships" in text and "TITLE: To admit or not to admit snooping" in text
        assert dataset[0][CHOSEN].startswith("Snooped, found something, should I admit what I found")
    assert list(named[PROMPT]) == list(own[PROMPT])
    # the same instruction as OpenAI's own layout of the dataset gets
    openai_text = load_grpo_dataset(str(SUMMARIZE_ROW))[0][PROMPT][0]["content"]
    assert text.split("SUBREDDIT:")[0] == openai_text.split("SUBREDDIT:")[0] != ""


def test_real_ultrafeedback_binarized_row_in_its_message_list_layout():
    raw = json.loads(UF_MESSAGES_ROW.read_text())
    row = load_grpo_dataset("ultrafeedback", dataset_path=str(UF_MESSAGES_ROW))[0]
    assert row[PROMPT] == [{"role": "user", "content": "how can i develop a habit of drawing daily"}]
    assert row[CHOSEN] == raw["chosen"][-1]["content"] and row[REJECTED] == raw["rejected"][-1]["content"]
    assert row["score_chosen"] == raw["score_chosen"] == 8.5


def test_openbmb_schema_completions_column_is_renamed(caplog):
    caplog.set_level("INFO")
    dataset = load_grpo_dataset("ultrafeedback_large", dataset_path=str(OPENBMB_SAMPLE))
    assert len(dataset) == 10 and "completions" not in dataset.column_names
    assert len(dataset[0]["source_completions"]) == 4
    assert dataset[0][PROMPT][0]["content"] == "What happens to you if you eat watermelon seeds?"
    assert set(dataset[CHOSEN]) == {""}  # the pipeline rows carry no ratings yet: no preference to take
    assert "renamed column(s) completions to source_completions" in caplog.text


def trl_reward_arguments() -> set[str]:
    """Every keyword TRL's GRPOTrainer gives reward functions, read from its source."""
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._calculate_rewards)
    explicit = set(re.findall(r"reward_func\(\s*(\w+)=\w+,\s*(\w+)=\w+,\s*(\w+)=\w+", source)[0])
    return explicit | set(re.findall(r'\breward_kwargs\["(\w+)"\]', source))


def test_reserved_columns_cover_every_argument_trl_passes():
    passed = trl_reward_arguments()
    assert {"prompts", "completions", "completion_ids", "trainer_state", "log_metric"} <= passed
    assert passed <= set(RESERVED_COLUMNS)


def test_rewards_take_the_openbmb_rows_as_trl_passes_them(caplog):
    """TRL calls ``f(prompts=, completions=, completion_ids=, **columns, trainer_state=, ...)``."""
    from rewards import build_reward_functions, get_accuracy_reward, preview_rewards

    dataset = load_grpo_dataset("ultrafeedback_large", dataset_path=str(OPENBMB_SAMPLE))
    columns = {key: dataset[key] for key in dataset.column_names if key != PROMPT}
    completions = [[{"role": "assistant", "content": "Nothing happens."}]] * len(dataset)
    scores = get_accuracy_reward()(
        prompts=dataset[PROMPT],
        completions=completions,
        completion_ids=[[1]] * len(dataset),
        trainer_state=None,
        log_extra=None,
        log_metric=None,
        **columns,
    )
    assert len(scores) == 10
    functions, _ = build_reward_functions(["accuracy", "length"])
    table = preview_rewards(dataset, functions)
    assert set(table) == {"accuracy_reward", "length_reward"} and "multiple values" not in caplog.text


def cli_two_steps(tmp_path, dataset: str, data_file):
    out = tmp_path / "run"
    args = [
        "--model", "smollm2-135m", "--dataset", dataset, "--dataset-path", str(data_file), "--output-dir", str(out),
        "--no-wandb", "--max-steps", "2", "--max-samples", "8", "--batch-size", "2", "--num-generations", "2",
        "--gradient-accumulation-steps", "1", "--max-completion-length", "8", "--lora-rank", "4",
    ]  # fmt: skip
    result = run_train_grpo(args, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (out / "adapter_model.safetensors").is_file()
    log = (out / "grpo_training.log").read_text()
    assert "multiple values" not in log and "Traceback" not in log
    return log


@pytest.mark.slow
def test_ultrafeedback_large_trains_two_steps_on_real_schema_rows(tmp_path):
    data_file = tmp_path / OPENBMB_SAMPLE.name
    shutil.copy(OPENBMB_SAMPLE, data_file)
    log = cli_two_steps(tmp_path, "ultrafeedback_large", data_file)
    assert "renamed column(s) completions to source_completions" in log


@pytest.mark.slow
def test_hh_rlhf_trains_two_steps_on_real_rows(tmp_path):
    log = cli_two_steps(tmp_path, "hh_rlhf", HH_SAMPLE)
    assert "converted 108 of 108 rows" in log


@pytest.mark.parametrize(
    ("name", "path", "rows"), [("hh_rlhf", HH_SAMPLE, 108), ("ultrafeedback_large", OPENBMB_SAMPLE, 10)]
)
def test_streaming_real_files_gives_the_same_rows(name, path, rows):
    streamed = list(load_grpo_dataset(name, dataset_path=str(path), streaming=True))
    eager = load_grpo_dataset(name, dataset_path=str(path))
    assert len(streamed) == rows and [r[PROMPT] for r in streamed] == eager[PROMPT]
    assert "completions" not in streamed[0]
