"""Converters on in-memory rows in the sources' real schemas, local file formats, and bad input."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from data_loader import (
    CHOSEN,
    PROMPT,
    REJECTED,
    DataError,
    convert_hh_rlhf,
    convert_preference,
    convert_question_answer,
    convert_summarize_carper,
    convert_summarize_openai,
    convert_ultrafeedback_raw,
    create_grpo_dataloader,
    detect_format,
    filter_long_prompts,
    load_grpo_dataset,
    make_arithmetic_rows,
    prepare_splits,
)

ULTRAFEEDBACK_ROW = {
    "prompt": "What is the capital of France?",
    "prompt_id": "abc",
    "chosen": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
    ],
    "rejected": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "I don't know."},
    ],
    "score_chosen": 9.0,
    "score_rejected": 2.0,
}
HH_ROW = {
    "chosen": "\n\nHuman: Hi, can you help me bake bread?\n\nAssistant: Sure, what kind?"
    "\n\nHuman: Sourdough.\n\nAssistant: Start with an active starter.",
    "rejected": "\n\nHuman: Hi, can you help me bake bread?\n\nAssistant: Sure, what kind?"
    "\n\nHuman: Sourdough.\n\nAssistant: Buy it at the shop.",
}
SUMMARIZE_OPENAI_ROW = {
    "info": {
        "id": "t3_x",
        "post": "My cat keeps knocking cups off the table.",
        "title": "Cat problem",
        "subreddit": "cats",
        "site": None,
        "article": None,
    },
    "summaries": [
        {"text": " Cat breaks cups.", "policy": "a", "note": None},
        {"text": " I like tables.", "policy": "b", "note": None},
    ],
    "choice": 0,
    "worker": "w1",
}
SUMMARIZE_CARPER_ROW = {
    "prompt": "SUBREDDIT: r/cats\nTITLE: Cat problem\nPOST: My cat keeps knocking cups off the table.\nTL;DR:",
    "chosen": "TL;DR: Cat breaks cups.",
    "rejected": "TL;DR: I like tables.",
}
ULTRAFEEDBACK_RAW_ROW = {
    "source": "evol_instruct",
    "instruction": "Name a prime number.",
    "models": ["a", "b", "c"],
    "completions": [
        {"response": "7", "annotations": {"helpfulness": {"Rating": "5"}, "honesty": {"Rating": "5"}}},
        {"response": "9", "annotations": {"helpfulness": {"Rating": "1"}, "honesty": {"Rating": "2"}}},
        {"response": "2", "annotations": {"helpfulness": {"Rating": "4"}, "honesty": {"Rating": "N/A"}}},
    ],
}
GSM8K_ROW = {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"}


def user(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize(
    ("converter", "row", "prompt", "chosen", "rejected"),
    [
        (
            convert_preference,
            ULTRAFEEDBACK_ROW,
            user("What is the capital of France?"),
            "The capital of France is Paris.",
            "I don't know.",
        ),
        (convert_preference, {"prompt": "Q?", "chosen": "A.", "rejected": "B."}, user("Q?"), "A.", "B."),  # seed's
        (
            convert_preference,
            {"prompt": user("Q?"), "chosen": [{"role": "assistant", "content": "A."}]},
            user("Q?"),
            "A.",
            "",
        ),  # message lists, no rejected
        (convert_preference, {"prompt": "Only a prompt"}, user("Only a prompt"), "", ""),
        (
            convert_preference,
            {k: v for k, v in ULTRAFEEDBACK_ROW.items() if k != "prompt"},
            user("What is the capital of France?"),
            "The capital of France is Paris.",
            "I don't know.",
        ),
        # without chosen, the common names of a reference answer (they were kept as columns, and rewards that
        # compare with the reference found none: the second fault hunt)
        (convert_preference, {"prompt": "2 + 2?", "answer": 4}, user("2 + 2?"), "4", ""),
        (convert_preference, {"prompt": "Solve x.", "solution": "\\boxed{3}"}, user("Solve x."), "\\boxed{3}", ""),
        (  # TRL's prompt-completion format
            convert_preference,
            {"prompt": user("Hi"), "completion": [{"role": "assistant", "content": "Hello."}]},
            user("Hi"),
            "Hello.",
            "",
        ),
        (convert_preference, {"prompt": "Q?", "chosen": "A.", "answer": "B"}, user("Q?"), "A.", ""),  # chosen wins
        (convert_question_answer, GSM8K_ROW, user(GSM8K_ROW["question"]), GSM8K_ROW["answer"], ""),
        (convert_ultrafeedback_raw, ULTRAFEEDBACK_RAW_ROW, user("Name a prime number."), "7", "9"),
    ],
)
def test_converters(converter, row, prompt, chosen, rejected):
    out = converter(row)
    assert (out[PROMPT], out[CHOSEN], out[REJECTED]) == (prompt, chosen, rejected)


def test_hh_rlhf_stays_multi_turn():
    out = convert_hh_rlhf(HH_ROW)
    assert [m["role"] for m in out[PROMPT]] == ["user", "assistant", "user"]
    assert out[PROMPT][-1]["content"] == "Sourdough."
    assert (out[CHOSEN], out[REJECTED]) == ("Start with an active starter.", "Buy it at the shop.")


@pytest.mark.parametrize("row", [SUMMARIZE_OPENAI_ROW, SUMMARIZE_CARPER_ROW])
def test_both_summarize_schemas_agree(row):
    out = convert_summarize_openai(row) if "info" in row else convert_summarize_carper(row)
    assert out[PROMPT][0]["content"].startswith("Summarize the following Reddit post")
    assert "SUBREDDIT: r/cats" in out[PROMPT][0]["content"] and "knocking cups" in out[PROMPT][0]["content"]
    assert (out[CHOSEN], out[REJECTED]) == ("Cat breaks cups.", "I like tables.")


def test_extra_columns_are_kept():
    assert convert_preference(ULTRAFEEDBACK_ROW)["score_chosen"] == 9.0


@pytest.mark.parametrize(
    ("row", "name"),
    [
        (ULTRAFEEDBACK_ROW, "preference"),
        (HH_ROW, "hh_rlhf"),
        (SUMMARIZE_OPENAI_ROW, "summarize_openai"),
        (SUMMARIZE_CARPER_ROW, "summarize_carper"),
        (ULTRAFEEDBACK_RAW_ROW, "ultrafeedback_raw"),
        (GSM8K_ROW, "question_answer"),
    ],
)
def test_detect_format(row, name):
    assert detect_format(row) == name


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return path


SEED_ROWS = [{"prompt": f"질문 {i}", "chosen": f"선호 답변 {i}", "rejected": "비선호 답변"} for i in range(6)]


# the last three: a JSON array saved as .jsonl or gzipped, and a gzipped CSV, were read as JSON Lines and every
# line reported malformed (the second fault hunt)
LOCAL_SUFFIXES = [".jsonl", ".jsonl.gz", ".json", ".parquet", ".csv", "folder", "array.jsonl", ".json.gz", ".csv.gz"]


@pytest.mark.parametrize("suffix", LOCAL_SUFFIXES)
def test_local_formats(tmp_path, suffix):
    from datasets import Dataset

    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, SEED_ROWS)
    elif suffix == ".jsonl.gz":
        write_jsonl(path, SEED_ROWS, opener=gzip.open)
    elif suffix in (".json", "array.jsonl"):
        path.write_text(json.dumps(SEED_ROWS, ensure_ascii=False, indent=1), encoding="utf-8")
    elif suffix == ".json.gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(json.dumps(SEED_ROWS, ensure_ascii=False))
    elif suffix == ".csv.gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(
                "prompt,chosen,rejected\n"
                + "".join(f"{r['prompt']},{r['chosen']},{r['rejected']}\n" for r in SEED_ROWS)
            )
    elif suffix == ".parquet":
        Dataset.from_list(SEED_ROWS).to_parquet(str(path))
    elif suffix == ".csv":
        Dataset.from_list(SEED_ROWS).to_csv(str(path))
    else:
        Dataset.from_list(SEED_ROWS).save_to_disk(str(path))
    dataset = load_grpo_dataset(str(path))
    assert len(dataset) == 6
    assert dataset[0][PROMPT] == user("질문 0") and dataset[0][CHOSEN] == "선호 답변 0"


def test_named_source_from_local_copy(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [HH_ROW] * 3)
    dataset = load_grpo_dataset("hh_rlhf", dataset_path=str(path))
    assert len(dataset) == 3 and dataset[0][CHOSEN] == "Start with an active starter."


def test_a_saved_dataset_dict_gives_the_named_sources_split(tmp_path):
    """ultrafeedback_binarized's saved splits start with train_sft; its preference split is train_prefs."""
    from datasets import Dataset, DatasetDict

    sft = Dataset.from_list([{**ULTRAFEEDBACK_ROW, "prompt": "SFT row"}])
    DatasetDict({"train_sft": sft, "train_prefs": Dataset.from_list([ULTRAFEEDBACK_ROW] * 2)}).save_to_disk(
        str(tmp_path / "uf")
    )
    dataset = load_grpo_dataset("ultrafeedback", dataset_path=str(tmp_path / "uf"))
    assert len(dataset) == 2 and dataset[0][CHOSEN] == "The capital of France is Paris."


def test_a_split_asked_of_a_local_copy_is_one_it_has(tmp_path):
    """A split the saved folder has is taken; one it lacks, or any split of a single file, is refused with the
    splits there are (the train split was taken instead, silently)."""
    from datasets import Dataset, DatasetDict

    saved = DatasetDict(
        {
            "train_prefs": Dataset.from_list([ULTRAFEEDBACK_ROW] * 2),
            "test_prefs": Dataset.from_list([ULTRAFEEDBACK_ROW]),
        }
    )
    saved.save_to_disk(str(tmp_path / "uf"))
    assert len(load_grpo_dataset("ultrafeedback", dataset_path=str(tmp_path / "uf"), split="test_prefs")) == 1
    streamed = load_grpo_dataset("ultrafeedback", dataset_path=str(tmp_path / "uf"), split="test_prefs", streaming=True)
    assert len(list(streamed)) == 1  # streaming took the train split whatever was asked
    with pytest.raises(DataError, match=r"uf has no split 'test'; its splits: train_prefs, test_prefs\."):
        load_grpo_dataset("ultrafeedback", dataset_path=str(tmp_path / "uf"), split="test")
    path = write_jsonl(tmp_path / "own.jsonl", [{"prompt": "Q?", "answer": "A"}])
    with pytest.raises(DataError, match=r"own.jsonl is one file, read whole: split='test'"):
        load_grpo_dataset(str(path), split="test")
    # The named source's own training split is the default: a file or a single dataset is read whole for it
    Dataset.from_list([ULTRAFEEDBACK_ROW] * 3).save_to_disk(str(tmp_path / "one"))
    assert len(load_grpo_dataset("ultrafeedback", dataset_path=str(tmp_path / "one"), split="train_prefs")) == 3
    copy = write_jsonl(tmp_path / "uf.jsonl", [ULTRAFEEDBACK_ROW])
    assert len(load_grpo_dataset("ultrafeedback", dataset_path=str(copy), split="train_prefs")) == 1


def test_a_column_missing_from_the_first_row_is_kept(tmp_path):
    """datasets takes the columns from the first row: a reward's extra column given from row 2 on was dropped."""
    rows = [{"prompt": "Q0?", "chosen": "A"}, *({"prompt": f"Q{i}?", "chosen": "A", "gold": i} for i in range(1, 4))]
    dataset = load_grpo_dataset(str(write_jsonl(tmp_path / "mixed.jsonl", rows)))
    assert dataset["gold"] == [None, 1, 2, 3]


def test_summarize_local_copy_in_either_layout(tmp_path):
    """A local copy of openai_summarize may be OpenAI's comparisons or CarperAI's prompt/chosen/rejected."""
    path = write_jsonl(tmp_path / "carper.jsonl", [SUMMARIZE_CARPER_ROW] * 2)
    carper = load_grpo_dataset("openai_summarize", dataset_path=str(path))
    openai = load_grpo_dataset(
        "openai_summarize", dataset_path=str(write_jsonl(tmp_path / "o.jsonl", [SUMMARIZE_OPENAI_ROW]))
    )
    assert carper[0][CHOSEN] == openai[0][CHOSEN]


def test_hub_id_resolves_to_its_converter(tmp_path):
    path = write_jsonl(tmp_path / "uf.jsonl", [ULTRAFEEDBACK_ROW] * 2)
    dataset = load_grpo_dataset("HuggingFaceH4/ultrafeedback_binarized", dataset_path=str(path))
    assert dataset[0][CHOSEN] == "The capital of France is Paris."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a", "chosen": "b"}\n{"prompt": "c", "chosen": \n', "bad.jsonl:2: malformed JSON"),
        ('{"text": "no known keys"}\n', "Keys found: ['text']"),
        ("", "the file is empty"),
        ('{"prompt": 5, "chosen": "x"}\n', "'prompt' must be a string or a list"),
        ('{"prompt": "   ", "chosen": "x"}\n', "'prompt' is empty"),
        ('["a", "list"]\n', "expected a JSON object per row"),
    ],
)
def test_bad_input_messages(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_grpo_dataset(str(path))
    assert message in str(err.value)


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_grpo_dataset(str(path))


def test_skip_bad_rows_reports_the_count(tmp_path, caplog):
    path = write_jsonl(tmp_path / "mixed.jsonl", [SEED_ROWS[0], "{broken", {"text": "?"}, SEED_ROWS[1]])
    dataset = load_grpo_dataset(str(path), skip_bad_rows=True)
    assert len(dataset) == 2
    assert "mixed.jsonl:2: malformed JSON" in caplog.text and "mixed.jsonl:3: unrecognised columns" in caplog.text
    assert "converted 2 of 4 rows, skipped 2 (1 x malformed JSON; 1 x unrecognised columns ['text'])" in caplog.text


def test_a_named_file_is_judged_by_its_whole_share_of_bad_rows_and_a_stream_as_it_reads(tmp_path):
    """3 bad rows among the first 203 of 503 (0.6% in all) were refused as more than 1% "of the first 203": a file
    is judged whole; a stream, whose length is unknown, at each bad row from its 200th row on."""
    path = write_jsonl(tmp_path / "hh.jsonl", [*[HH_ROW] * 200, *["{broken"] * 3, *[HH_ROW] * 300])
    assert len(load_grpo_dataset("hh_rlhf", dataset_path=str(path))) == 500
    with pytest.raises(DataError, match=r"3 of the first 203 rows"):
        list(load_grpo_dataset("hh_rlhf", dataset_path=str(path), streaming=True))


def test_a_stream_keeps_its_first_rows_columns_and_holds_out_its_first_rows(tmp_path):
    """A column some later rows lack is None there (a reward's keyword was a KeyError in TRL); eval_samples holds out
    the stream's first rows (it was ignored) and training starts after them."""
    rows = [{"prompt": f"Q{i}?", "chosen": str(i), "gold": i} for i in range(6)]
    del rows[2]["gold"]
    stream = load_grpo_dataset(str(write_jsonl(tmp_path / "own.jsonl", rows)), streaming=True)
    assert [row["gold"] for row in stream] == [0, 1, None, 3, 4, 5]
    train, held_out = prepare_splits(stream, max_samples=2, eval_samples=3, seed=0)
    assert held_out["gold"] == [0, 1, None] and [row["gold"] for row in train] == [3, 4]


def test_missing_dataset_offline_says_how_to_give_a_local_copy():
    with pytest.raises(DataError) as err:
        load_grpo_dataset("openai_summarize")
    assert "--dataset-path" in str(err.value) and "openai/summarize_from_feedback" in str(err.value)


def test_splits_are_seeded_and_disjoint():
    from datasets import Dataset

    dataset = Dataset.from_list(make_arithmetic_rows(50, seed=1))
    train, held_out = prepare_splits(dataset, max_samples=10, eval_samples=5, seed=3)
    again, _ = prepare_splits(dataset, max_samples=10, eval_samples=5, seed=3)
    assert len(train) == 10 and len(held_out) == 5 and train[PROMPT] == again[PROMPT]
    assert not {str(p) for p in train[PROMPT]} & {str(p) for p in held_out[PROMPT]}


def test_duplicate_rows_in_both_splits_are_warned(caplog):
    from datasets import Dataset

    rows = make_arithmetic_rows(10, seed=1)
    train, held_out = prepare_splits(Dataset.from_list(rows + rows), max_samples=None, eval_samples=4, seed=3)
    leaked = sum(p in train[PROMPT] for p in held_out[PROMPT])
    assert leaked > 0 and f"{leaked} of 4 held-out prompts are also training prompts" in caplog.text


def test_long_prompts_are_dropped_and_counted(tiny_model_dir, caplog):
    from datasets import Dataset

    from models import load_tokenizer

    caplog.set_level("INFO")
    rows = [
        {"prompt": user("short"), "chosen": "", "rejected": ""},
        {"prompt": user("long " * 200), "chosen": "", "rejected": ""},
    ]
    kept = filter_long_prompts(Dataset.from_list(rows), load_tokenizer(str(tiny_model_dir)), 64)
    assert len(kept) == 1 and "dropped 1 of 2 prompts longer than 64 tokens" in caplog.text


def test_create_grpo_dataloader_streams(tmp_path):
    """streaming=True failed with "object of type IterableDataset has no len()" (third fault hunt)."""
    path = str(write_jsonl(tmp_path / "d.jsonl", SEED_ROWS))
    loader, _ = create_grpo_dataloader(None, path, max_samples=5, batch_size=2, streaming=True)
    assert [len(batch) for batch in loader] == [2, 2, 1]


def test_create_grpo_dataloader_returns_loader_and_dataset(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "d.jsonl", SEED_ROWS)
    loader, dataset = create_grpo_dataloader(str(tiny_model_dir), str(path), max_samples=4, batch_size=2)
    batch = next(iter(loader))
    assert len(dataset) == 4 and len(batch) == 2 and set(batch[0]) >= {PROMPT, CHOSEN, REJECTED}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_streaming_local_files(tmp_path, suffix):
    from datasets import Dataset, IterableDataset

    path = tmp_path / f"big{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, [HH_ROW] * 5)
    else:
        Dataset.from_list([HH_ROW] * 5).to_parquet(str(path))
    stream = load_grpo_dataset(str(path), streaming=True)
    assert isinstance(stream, IterableDataset)
    rows = list(stream)
    assert len(rows) == 5 and rows[0][CHOSEN] == "Start with an active starter."


CONVERSATION = [{"role": "user", "content": "What is 1+1?"}, {"role": "assistant", "content": "2"}]


@pytest.mark.parametrize(
    ("row", "reference"),
    [
        ({"messages": CONVERSATION}, "2"),  # TRL's conversational format: the final reply is the reference
        ({"messages": CONVERSATION[:1]}, ""),  # no reply: a prompt without reference
        ({"prompt": CONVERSATION}, "2"),  # a prompt ending with the reply: it was dropped (fault hunt)
        ({"prompt": CONVERSATION, "answer": "two"}, "two"),  # an answer column still wins
        ({"prompt": CONVERSATION, "chosen": "3"}, "3"),
    ],
)
def test_a_conversation_ending_with_the_reply_gives_prompt_and_reference(row, reference):
    assert detect_format(row) == "preference"
    out = convert_preference(row)
    assert out[PROMPT] == CONVERSATION[:1] and out[CHOSEN] == reference


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_messages_file_loads_and_an_unknown_one_names_the_file(tmp_path, suffix):
    from datasets import Dataset

    for name, rows in (("messages", [{"messages": CONVERSATION}] * 3), ("text", [{"text": "x"}] * 3)):
        path = tmp_path / f"{name}{suffix}"
        write_jsonl(path, rows) if suffix == ".jsonl" else Dataset.from_list(rows).to_parquet(str(path))
        if name == "messages":
            assert load_grpo_dataset(str(path))[CHOSEN] == ["2"] * 3
        else:  # the Parquet error named no file (fault hunt)
            with pytest.raises(DataError, match=rf"{path.name}.*: unrecognised columns \['text'\]"):
                load_grpo_dataset(str(path))


def test_streaming_reports_bad_rows_with_their_line(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [SEED_ROWS[0], {"text": "?"}])
    with pytest.raises(DataError, match=r"s\.jsonl:2"):
        list(load_grpo_dataset(str(path), streaming=True))


@pytest.mark.parametrize(
    ("name", "row", "chosen"),
    [
        ("ultrafeedback", ULTRAFEEDBACK_ROW, "The capital of France is Paris."),
        ("ultrafeedback_large", ULTRAFEEDBACK_RAW_ROW, "7"),
        ("hh_rlhf", HH_ROW, "Start with an active starter."),
        ("openai_summarize", SUMMARIZE_OPENAI_ROW, "Cat breaks cups."),
    ],
)
def test_every_named_source_from_a_local_copy(tmp_path, name, row, chosen):
    from datasets import Dataset

    folder = tmp_path / name
    Dataset.from_list([row] * 3).save_to_disk(str(folder))  # what save_to_disk of the hub copy gives
    dataset = load_grpo_dataset(name, dataset_path=str(folder))
    assert len(dataset) == 3 and dataset[0][CHOSEN] == chosen and dataset[0][PROMPT][-1]["role"] == "user"


def _truncated_gzip(path):
    write_jsonl(path, SEED_ROWS * 200, opener=gzip.open)
    path.write_bytes(path.read_bytes()[:-40])


def _corrupt_parquet(path):
    from datasets import Dataset

    Dataset.from_list(SEED_ROWS).to_parquet(str(path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64
    path.write_bytes(bytes(data))


FAULTY_FILES = [  # (file name, writer, words the one-line message must hold)
    ("trunc.jsonl.gz", _truncated_gzip, ["trunc.jsonl.gz", "corrupt or truncated compressed data", "again"]),
    ("plain.jsonl.gz", lambda p: write_jsonl(p, SEED_ROWS), ["plain.jsonl.gz", "not gzip-compressed", "Rename"]),
    ("bad.parquet", _corrupt_parquet, ["bad.parquet", "cannot be read as Parquet", "write the file again"]),
    ("folder.jsonl", lambda p: p.mkdir(), ["folder.jsonl", "not one written by datasets' save_to_disk"]),
    ("quote.csv", lambda p: p.write_text('prompt,chosen\nq1,a\n"q2,b\n', encoding="utf-8"), ["quote.csv", "quote"]),
    ("latin.csv", lambda p: p.write_bytes("prompt,chosen\ncafé,x\n".encode("latin-1")), ["latin.csv:2:", "UTF-8"]),
    (
        "types.jsonl",
        lambda p: write_jsonl(p, [{**SEED_ROWS[0], "extra": 1}, {**SEED_ROWS[1], "extra": "one"}]),
        ["types.jsonl:2", "column 'extra'", "one type"],
    ),
    (
        "semicolons.csv",
        lambda p: p.write_text("prompt;chosen;rejected\nq;a;b\n", encoding="utf-8"),
        ["semicolons.csv", "separated by ';'", "with commas"],
    ),
    (
        "summarize.jsonl",
        lambda p: write_jsonl(p, [{**SUMMARIZE_OPENAI_ROW, "summaries": [{"text": 1}, {"text": "b"}]}]),
        ["summarize.jsonl:1", "'summaries[0].text' must be text, got a number"],
    ),
    (
        "openbmb.jsonl",
        lambda p: write_jsonl(p, [{**ULTRAFEEDBACK_RAW_ROW, "instruction": 7}]),
        ["openbmb.jsonl:1", "'instruction' must be text, got a number"],
    ),
]


@pytest.mark.parametrize(("name", "writer", "words"), FAULTY_FILES, ids=[f[0] for f in FAULTY_FILES])
def test_faulty_files_give_one_clear_error(tmp_path, name, writer, words):
    path = tmp_path / name
    writer(path)
    with pytest.raises(DataError) as err:
        load_grpo_dataset(str(path))
    assert all(word in str(err.value) for word in words), str(err.value)
    assert "\n" not in str(err.value)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(SEED_ROWS[0], ensure_ascii=False) + "\n").encode("utf-8"))
    assert load_grpo_dataset(str(path))[0][CHOSEN] == "선호 답변 0"


def test_csv_numbers_stay_text(tmp_path):
    path = tmp_path / "nums.csv"
    path.write_text("prompt,chosen,rejected\nWhat is 2+2?,4,5\nWhat is 3+3?,6,7\n", encoding="utf-8")
    dataset = load_grpo_dataset(str(path))
    assert dataset[CHOSEN] == ["4", "6"] and dataset[REJECTED] == ["5", "7"]


def test_csv_header_names_lose_the_spaces_around_them(tmp_path):
    """A header typed as "prompt, chosen" kept a column " chosen": no reference, every row graded by keywords."""
    path = tmp_path / "spaced.csv"
    path.write_text("prompt, chosen , rejected\nWhat is 2+2?,4,5\n", encoding="utf-8")
    row = load_grpo_dataset(str(path))[0]
    assert (row[CHOSEN], row[REJECTED]) == ("4", "5") and " chosen " not in row


CHAT_PROMPT = [{"role": "system", "content": 'Be brief, say "ok"'}, {"role": "user", "content": "What is 2+2?"}]


@pytest.mark.parametrize(
    "writer",
    [
        pytest.param(
            lambda path: (
                __import__("datasets").Dataset.from_list([{"prompt": CHAT_PROMPT, "answer": "4"}]).to_csv(str(path))
            ),
            id="datasets",
        ),
        pytest.param(
            lambda path: (
                __import__("pandas").DataFrame([{"prompt": CHAT_PROMPT, "answer": "4"}]).to_csv(path, index=False)
            ),
            id="pandas",
        ),
        pytest.param(
            lambda path: path.write_text(
                "prompt,answer\n" + '"' + json.dumps(CHAT_PROMPT).replace('"', '""') + '",4\n', encoding="utf-8"
            ),
            id="json",
        ),
    ],
)
def test_a_chat_prompt_saved_to_csv_is_read_as_messages(tmp_path, writer):
    """What the libraries' own to_csv write for a message column (a numpy array's repr, Python's repr) and a
    JSON cell: read as the conversation, not as one user message that starts with "[{'role': ..."."""
    path = tmp_path / "chat.csv"
    writer(path)
    row = load_grpo_dataset(str(path))[0]
    assert row[PROMPT] == CHAT_PROMPT and row[CHOSEN] == "4"


def test_a_csv_cell_that_only_looks_like_a_list_stays_text(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text('prompt,chosen\n"[{x}] is a set",yes\n"[{\'role\': 1}]",no\n', encoding="utf-8")
    assert load_grpo_dataset(str(path))[PROMPT] == [
        [{"role": "user", "content": "[{x}] is a set"}],
        [{"role": "user", "content": "[{'role': 1}]"}],
    ]


def test_openbmb_ratings_in_the_published_layout():
    """Aspect ratings are {"Rating": "4", ...} objects (older dumps: lists of them); "N/A" is ignored."""
    row = {
        "instruction": "Name a prime number.",
        "completions": [
            {"response": "9", "annotations": {"honesty": {"Rating": "1"}, "helpfulness": [{"Rating": "2"}]}},
            {"response": "7", "annotations": {"honesty": {"Rating": "5"}, "truthfulness": {"Rating": "N/A"}}},
            {"response": "unrated", "annotations": {}, "overall_score": None},
        ],
    }
    assert (convert_ultrafeedback_raw(row)[CHOSEN], convert_ultrafeedback_raw(row)[REJECTED]) == ("7", "9")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_samples": 0}, "max_samples=0"),
        ({"max_samples": -3}, "max_samples=-3"),
        ({"max_samples": "5"}, "'5'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"max_prompt_tokens": True}, "max_prompt_tokens=True"),
    ],
)
def test_the_python_loader_refuses_counts_that_are_not_positive_integers(kwargs, named):
    """Found by a fault hunt: max_samples=0 gave an empty dataset, "5" a bare TypeError."""
    from data_loader import create_grpo_dataloader

    with pytest.raises(DataError, match="must be a positive integer") as err:
        create_grpo_dataloader(None, "arithmetic", **kwargs)
    assert named in str(err.value)


def test_arithmetic_questions_are_not_repeated():
    """Found by the quick test's own warning: drawn with repeats, held-out questions were also training questions."""
    rows = make_arithmetic_rows(2000)
    assert len({row[PROMPT][-1]["content"] for row in rows}) == 2000
    assert len(make_arithmetic_rows(20, max_operand=2)) == 20  # more rows than questions: repeats, no endless loop


@pytest.mark.parametrize(
    ("name", "rows", "words"),
    [("", 10, "dataset_name is empty"), ("arithmetic", 0, "arithmetic_rows=0"), ("arithmetic", "5", "rows='5'")],
)
def test_odd_loader_arguments_are_one_data_error(name, rows, words):
    """A KeyError: None, or an empty dataset found only by train() (fourth hunt)."""
    with pytest.raises(DataError, match=re.escape(words)):
        load_grpo_dataset(name, arithmetic_rows=rows)
