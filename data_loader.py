"""Turn preference and question/answer datasets into one GRPO schema.

Output schema (column names are the constants below):

* ``prompt``: a conversation, a list of ``{"role", "content"}`` messages ending with a user turn;
* ``chosen`` / ``rejected``: the reference answers as plain strings ("" where the source has none).

Further source columns are kept so that rewards can use them.  Each source has one pure row converter,
registered in ``CONVERTERS``; named datasets (``DATASET_SOURCES``) say where on the hub they live and which
converter they need.  Local files and folders are read with the converter detected from their columns.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROMPT, CHOSEN, REJECTED = "prompt", "chosen", "rejected"
QUESTION, ANSWER = "question", "answer"
ROLE, CONTENT = "role", "content"
SCHEMA_COLUMNS = (PROMPT, CHOSEN, REJECTED)

Row = dict[str, Any]


class DataError(ValueError):
    """Input data that cannot be used; the message names the place and the fix."""


# --------------------------------------------------------------------------------------------------
# Row converters: pure functions from one source row to the output schema (plus kept columns)


def _user(text: str) -> list[dict[str, str]]:
    return [{ROLE: "user", CONTENT: text}]


def _as_messages(value: Any, key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return _user(value)
    if isinstance(value, list) and all(isinstance(m, dict) and ROLE in m and CONTENT in m for m in value):
        return [{ROLE: str(m[ROLE]), CONTENT: str(m[CONTENT])} for m in value]
    raise DataError(f"'{key}' must be a string or a list of {{role, content}} messages, got {_describe(value)}")


def _final_reply(value: Any, key: str) -> str:
    """A reference answer: a string, or the last assistant message of a conversation."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    messages = _as_messages(value, key)
    replies = [m[CONTENT] for m in messages if m[ROLE] == "assistant"]
    if not replies:
        raise DataError(f"'{key}' is a conversation without an assistant turn")
    return replies[-1]


def _prompt_before_reply(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The turns before the final assistant reply."""
    last_assistant = max((i for i, m in enumerate(messages) if m[ROLE] == "assistant"), default=len(messages))
    return messages[:last_assistant]


def _checked_prompt(messages: list[dict[str, str]], key: str) -> list[dict[str, str]]:
    if not messages or messages[-1][ROLE] != "user":
        raise DataError(f"'{key}' must end with a user turn")
    if not messages[-1][CONTENT].strip():
        raise DataError(f"'{key}' is empty")
    return messages


def convert_preference(row: Row) -> Row:
    """``prompt`` (string or messages) with optional ``chosen``/``rejected`` (strings or conversations).

    Covers UltraFeedback binarized, the seed's custom format, message-list rows and prompt-only rows; a row
    without ``prompt`` takes it from the turns of ``chosen`` before its final reply.
    """
    if PROMPT in row and row[PROMPT] is not None:
        prompt = _as_messages(row[PROMPT], PROMPT)
        if prompt and prompt[-1][ROLE] == "assistant":
            prompt = _prompt_before_reply(prompt)
    elif isinstance(row.get(CHOSEN), list):
        prompt = _prompt_before_reply(_as_messages(row[CHOSEN], CHOSEN))
    else:
        raise DataError("no 'prompt', and 'chosen' is not a conversation to take it from")
    return {
        **row,
        PROMPT: _checked_prompt(prompt, PROMPT),
        CHOSEN: _final_reply(row.get(CHOSEN), CHOSEN),
        REJECTED: _final_reply(row.get(REJECTED), REJECTED),
    }


def convert_question_answer(row: Row) -> Row:
    """GSM8K-style ``question``/``answer``: the answer (with its ``#### 42``) is the reference."""
    question, answer = row[QUESTION], row[ANSWER]
    if not isinstance(question, str) or not isinstance(answer, (str, int, float)):
        raise DataError(f"'question' must be a string and 'answer' a string or number, got {_describe(question)}")
    return {**row, PROMPT: _checked_prompt(_user(question), QUESTION), CHOSEN: str(answer), REJECTED: ""}


_HH_TURN_RE = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` -> messages with roles user/assistant."""
    parts = _HH_TURN_RE.split(text)
    if len(parts) < 3:
        raise DataError("not in hh-rlhf's '\\n\\nHuman: ...\\n\\nAssistant: ...' form")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{ROLE: roles[speaker], CONTENT: content.strip()} for speaker, content in zip(parts[1::2], parts[2::2])]


def convert_hh_rlhf(row: Row) -> Row:
    """Anthropic/hh-rlhf: the prompt is every turn before the final Assistant reply of ``chosen``."""
    chosen, rejected = parse_hh_dialogue(row[CHOSEN]), parse_hh_dialogue(row[REJECTED])
    if chosen[-1][ROLE] != "assistant":
        raise DataError("'chosen' does not end with an Assistant reply")
    return {
        **row,
        PROMPT: _checked_prompt(chosen[:-1], CHOSEN),
        CHOSEN: chosen[-1][CONTENT],
        REJECTED: rejected[-1][CONTENT] if rejected[-1][ROLE] == "assistant" else "",
    }


SUMMARY_INSTRUCTION = "Summarize the following Reddit post in a few sentences."


def _summary_prompt(subreddit: str, title: str, post: str) -> list[dict[str, str]]:
    header = f"SUBREDDIT: r/{subreddit}\nTITLE: {title}\n" if subreddit or title else ""
    return _user(f"{SUMMARY_INSTRUCTION}\n\n{header}POST: {post.strip()}")


def convert_summarize_openai(row: Row) -> Row:
    """openai/summarize_from_feedback ``comparisons``: ``info.post``, ``summaries[i].text``, ``choice``."""
    info, summaries, choice = row["info"], row["summaries"], row["choice"]
    if not isinstance(info, dict) or not info.get("post"):
        raise DataError("'info' must hold the post text in info.post")
    if not isinstance(summaries, list) or len(summaries) != 2 or choice not in (0, 1):
        raise DataError("'summaries' must hold two summaries and 'choice' be 0 or 1")
    return {
        **row,
        PROMPT: _summary_prompt(info.get("subreddit") or "", info.get("title") or "", info["post"]),
        CHOSEN: summaries[choice]["text"].strip(),
        REJECTED: summaries[1 - choice]["text"].strip(),
    }


_TLDR_RE = re.compile(r"^\s*TL;DR:\s*", re.IGNORECASE)


def convert_summarize_carper(row: Row) -> Row:
    """CarperAI/openai_summarize_comparisons: ``prompt`` ends with 'TL;DR:', answers start with it."""
    body = re.sub(r"\s*TL;DR:\s*$", "", row[PROMPT])
    match = re.match(r"SUBREDDIT: r/(.*)\nTITLE: (.*)\nPOST: (.*)", body, re.DOTALL)
    prompt = _summary_prompt(*match.groups()) if match else _user(f"{SUMMARY_INSTRUCTION}\n\n{body}")
    return {
        **row,
        PROMPT: prompt,
        CHOSEN: _TLDR_RE.sub("", row[CHOSEN]).strip(),
        REJECTED: _TLDR_RE.sub("", row[REJECTED]).strip(),
    }


def _rating(completion: dict[str, Any]) -> float:
    ratings = [
        float(a["Rating"])
        for a in (completion.get("annotations") or {}).values()
        if isinstance(a, dict) and str(a.get("Rating", "")).replace(".", "", 1).isdigit()
    ]
    return sum(ratings) / len(ratings) if ratings else float(completion.get("overall_score") or 0)


def convert_ultrafeedback_raw(row: Row) -> Row:
    """openbmb/UltraFeedback: best-rated completion is ``chosen``, worst-rated is ``rejected``.

    The rating is the mean of the four fine-grained annotation ratings (as HuggingFaceH4 binarised it).
    """
    completions = [c for c in row["completions"] if isinstance(c, dict) and c.get("response")]
    if len(completions) < 2:
        raise DataError("'completions' needs at least two rated responses")
    ranked = sorted(completions, key=_rating)
    return {
        **row,
        PROMPT: _checked_prompt(_user(row["instruction"]), "instruction"),
        CHOSEN: ranked[-1]["response"],
        REJECTED: ranked[0]["response"],
    }


CONVERTERS: dict[str, Callable[[Row], Row]] = {
    "preference": convert_preference,
    "question_answer": convert_question_answer,
    "hh_rlhf": convert_hh_rlhf,
    "summarize_openai": convert_summarize_openai,
    "summarize_carper": convert_summarize_carper,
    "ultrafeedback_raw": convert_ultrafeedback_raw,
}

ACCEPTED_SHAPES = (
    '{"prompt": str | messages, "chosen": str | messages, "rejected": str | messages} (chosen/rejected optional); '
    '{"chosen": messages, "rejected": messages} (UltraFeedback); {"question", "answer"} (GSM8K); '
    '{"chosen", "rejected"} hh-rlhf dialogue strings; {"info", "summaries", "choice"} (summarize_from_feedback); '
    '{"instruction", "completions"} (openbmb/UltraFeedback)'
)


def detect_format(row: Row) -> str:
    """The converter name for a row, from its keys (and, for hh-rlhf, the shape of its strings)."""
    keys = set(row)
    if {"info", "summaries", "choice"} <= keys:
        return "summarize_openai"
    if {"instruction", "completions"} <= keys:
        return "ultrafeedback_raw"
    if {QUESTION, ANSWER} <= keys and PROMPT not in keys:
        return "question_answer"
    if PROMPT in keys:
        prompt = row[PROMPT]
        if isinstance(prompt, str) and prompt.rstrip().endswith("TL;DR:") and isinstance(row.get(CHOSEN), str):
            return "summarize_carper"
        return "preference"
    if {CHOSEN, REJECTED} <= keys:
        if isinstance(row[CHOSEN], str) and "\n\nAssistant:" in row[CHOSEN]:
            return "hh_rlhf"
        return "preference"
    raise DataError(f"unrecognised columns {sorted(keys)}. Accepted shapes: {ACCEPTED_SHAPES}")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


# --------------------------------------------------------------------------------------------------
# Named sources


@dataclass(frozen=True)
class DatasetSource:
    """Where a named dataset lives on the hub and how to convert it."""

    hub_id: str
    converter: str
    train_split: str = "train"
    test_split: str | None = "test"
    hub_config: str | None = None
    data_dir: str | None = None
    description: str = ""


DATASET_SOURCES: dict[str, DatasetSource] = {
    "ultrafeedback": DatasetSource(
        "HuggingFaceH4/ultrafeedback_binarized",
        "preference",
        "train_prefs",
        "test_prefs",
        description="61k prompts with chosen/rejected conversations (HuggingFaceH4's binarised UltraFeedback).",
    ),
    "ultrafeedback_large": DatasetSource(
        "openbmb/UltraFeedback",
        "ultrafeedback_raw",
        "train",
        None,
        description="All 64k prompts of the original UltraFeedback, 4 rated responses each; best vs worst.",
    ),
    "hh_rlhf": DatasetSource(
        "Anthropic/hh-rlhf",
        "hh_rlhf",
        "train",
        "test",
        description="160k multi-turn dialogues; subsets harmless-base, helpful-base, helpful-online, "
        "helpful-rejection-sampled, red-team-attempts (--dataset-subset).",
    ),
    "openai_summarize": DatasetSource(
        "openai/summarize_from_feedback",
        "summarize_openai",
        "train",
        "validation",
        hub_config="comparisons",
        description="Reddit TL;DR posts with two summaries and a human choice.",
    ),
    "arithmetic": DatasetSource(
        "", "preference", description="Built in: generated addition/subtraction questions with numeric answers."
    ),
}
HUB_ID_TO_SOURCE = {source.hub_id.lower(): name for name, source in DATASET_SOURCES.items() if source.hub_id}
HUB_ID_TO_SOURCE["carperai/openai_summarize_comparisons"] = "openai_summarize"


# --------------------------------------------------------------------------------------------------
# Built-in arithmetic data (the quick test and the learning demo)


def make_arithmetic_rows(count: int, seed: int = 0, max_operand: int = 50) -> list[Row]:
    """Addition and subtraction questions with the answer as ``chosen`` and an off-by-one ``rejected``."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
        op = rng.choice("+-")
        answer = a + b if op == "+" else a - b
        rows.append(
            {
                PROMPT: _user(f"What is {a} {op} {b}? Answer with a number."),
                CHOSEN: str(answer),
                REJECTED: str(answer + rng.choice((-1, 1))),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Reading local files


def _open_text(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8")


def iter_json_lines(path: Path, skip_bad_rows: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-empty line; errors name the file and line."""
    try:
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as err:
                    message = f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})"
                    if not skip_bad_rows:
                        raise DataError(
                            f"{message}. Fix the line, or pass --skip-bad-rows to skip such rows."
                        ) from None
                    logger.warning("skipped %s", message)
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}). Re-save the file as UTF-8."
        ) from None


def read_json_records(path: Path, skip_bad_rows: bool) -> Iterator[tuple[str, Any]]:
    """(location, record) pairs from JSON Lines (also gzipped) or a JSON array file."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text ({err.reason}). Re-save the file as UTF-8.") from None
        except json.JSONDecodeError:
            data = None  # a .json file may hold JSON Lines too
        if isinstance(data, list):
            yield from ((f"{path}[{i}]", record) for i, record in enumerate(data))
            return
        if isinstance(data, dict):
            yield str(path), data
            return
    for lineno, record in iter_json_lines(path, skip_bad_rows):
        yield f"{path}:{lineno}", record


def convert_record(location: str, record: Any, converter: str | None) -> Row:
    """One source record in the GRPO schema; a bad one raises with its location, keys and the accepted shapes."""
    try:
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object per row, got {_describe(record)}")
        return CONVERTERS[converter or detect_format(record)](record)
    except (DataError, KeyError, TypeError) as err:
        found = sorted(record) if isinstance(record, dict) else []
        raise DataError(
            f"{location}: {_reason(err)}. Keys found: {found}. Accepted shapes: {ACCEPTED_SHAPES}. "
            "Fix the row or pass --skip-bad-rows."
        ) from None


def convert_records(records, converter: str | None, skip_bad_rows: bool, source: str) -> list[Row]:
    """Convert (location, record) pairs; bad rows raise with their location, or are skipped and counted."""
    rows, skipped = [], 0
    for location, record in records:
        try:
            rows.append(convert_record(location, record, converter))
        except DataError:
            if not skip_bad_rows:
                raise
            skipped += 1
    if skipped:
        logger.warning("%s: skipped %d bad row(s) of %d", source, skipped, skipped + len(rows))
    if not rows:
        raise DataError(f"{source}: no usable rows (empty file or every row skipped).")
    return rows


def _reason(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"missing key {err.args[0]!r}"
    return str(err)


JSON_SUFFIXES = (".jsonl", ".json", ".gz", ".ndjson")
ARROW_BUILDERS = {".parquet": "parquet", ".csv": "csv"}  # file suffix -> datasets builder
LOCAL_SUFFIXES = (*JSON_SUFFIXES, *ARROW_BUILDERS)


def is_local_path(name: str) -> bool:
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.endswith(LOCAL_SUFFIXES)


def existing_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data file or folder not found: {path}")
    return path


def load_local_rows(path: str | Path, converter: str | None = None, skip_bad_rows: bool = False):
    """A converted ``datasets.Dataset`` from a local file or ``save_to_disk`` folder."""
    from datasets import Dataset

    path = existing_path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    if path.suffix in JSON_SUFFIXES:
        rows = convert_records(read_json_records(path, skip_bad_rows), converter, skip_bad_rows, str(path))
        return Dataset.from_list(rows)
    return convert_dataset(read_arrow_source(path), converter, skip_bad_rows, str(path))


def _converted_json_rows(path: str, converter: str | None, skip_bad_rows: bool) -> Iterator[Row]:
    """Rows of a JSON/JSONL file, converted one at a time (the streaming path)."""
    for location, record in read_json_records(Path(path), skip_bad_rows):
        try:
            yield convert_record(location, record, converter)
        except DataError as err:
            if not skip_bad_rows:
                raise
            logger.warning("skipped %s", err)


def stream_local_rows(path: str | Path, converter: str | None = None, skip_bad_rows: bool = False):
    """A converted ``datasets.IterableDataset`` over a local file or folder, for sets larger than memory."""
    import datasets

    path = existing_path(path)
    if path.suffix in JSON_SUFFIXES:
        return datasets.IterableDataset.from_generator(
            _converted_json_rows, gen_kwargs={"path": str(path), "converter": converter, "skip_bad_rows": skip_bad_rows}
        )
    if path.is_dir():
        raw = read_arrow_source(path).to_iterable_dataset()
    else:
        if path.suffix not in ARROW_BUILDERS:
            raise DataError(f"{path}: unsupported file type for streaming; use .jsonl, .parquet, .csv or a folder.")
        raw = datasets.load_dataset(ARROW_BUILDERS[path.suffix], data_files=str(path), split="train", streaming=True)
    first = next(iter(raw), None)
    if first is None:
        raise DataError(f"{path}: the dataset has no rows.")
    return raw.map(CONVERTERS[converter or detect_format(first)])


def read_arrow_source(path: Path):
    """Parquet, CSV or a ``save_to_disk`` folder (a DatasetDict yields its train split)."""
    import datasets

    if path.is_dir():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as err:
            raise DataError(f"{path}: not a datasets.save_to_disk folder ({err}).") from None
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else next(iter(loaded))
            logger.info("%s: using split '%s' of %s", path, split, list(loaded))
            return loaded[split]
        return loaded
    if path.suffix not in ARROW_BUILDERS:
        raise DataError(f"{path}: unsupported file type; use .jsonl, .jsonl.gz, .json, .parquet, .csv or a folder.")
    return datasets.load_dataset(ARROW_BUILDERS[path.suffix], data_files=str(path), split="train")


def convert_dataset(dataset, converter: str | None, skip_bad_rows: bool, source: str):
    """Map an Arrow-backed dataset through its converter in batches (fast for large sets)."""
    if len(dataset) == 0:
        raise DataError(f"{source}: the dataset has no rows.")
    name = converter or detect_format(dataset[0])

    def convert_batch(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        records = ((f"{source} row {i}", dict(zip(batch, values))) for i, values in zip(indices, zip(*batch.values())))
        rows = convert_records(records, name, skip_bad_rows, source) if indices else []
        return {key: [row[key] for row in rows] for key in (rows[0] if rows else batch)}

    return dataset.map(
        convert_batch,
        batched=True,
        batch_size=2000,
        with_indices=True,
        remove_columns=dataset.column_names,
        desc=f"converting {Path(source).name}",
    )


# --------------------------------------------------------------------------------------------------
# Hub sources


def load_hub_rows(source_name: str, split: str, subset: str | None = None, streaming: bool = False):
    import datasets

    source = DATASET_SOURCES[source_name]
    try:
        raw = datasets.load_dataset(
            source.hub_id, source.hub_config, data_dir=subset or source.data_dir, split=split, streaming=streaming
        )
    except (ConnectionError, OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        raise DataError(
            f"dataset '{source_name}' ({source.hub_id}, split {split}) could not be loaded: "
            f"{str(err).splitlines()[0]}. "
            f"Without hub access give a local copy: --dataset {source_name} --dataset-path PATH, where PATH is a "
            f".jsonl/.parquet file or a folder made by datasets.load_dataset('{source.hub_id}').save_to_disk(PATH). "
            "Set HF_HUB_OFFLINE=1 to fail fast offline."
        ) from None
    if streaming:
        return raw.map(CONVERTERS[source.converter])
    return convert_dataset(raw, source.converter, False, source.hub_id)


# --------------------------------------------------------------------------------------------------
# Public API


def resolve_source(dataset_name: str) -> tuple[str | None, str | None]:
    """(source name, local path) for a dataset name, hub id or local path."""
    if dataset_name in DATASET_SOURCES:
        return dataset_name, None
    if dataset_name.lower() in HUB_ID_TO_SOURCE:
        return HUB_ID_TO_SOURCE[dataset_name.lower()], None
    if is_local_path(dataset_name):
        return None, dataset_name
    raise DataError(
        f"unknown dataset {dataset_name!r}. Use one of {', '.join(DATASET_SOURCES)}, a hub id of one of them "
        f"({', '.join(s.hub_id for s in DATASET_SOURCES.values() if s.hub_id)}), or a local file or folder."
    )


def load_grpo_dataset(
    dataset_name: str,
    *,
    dataset_path: str | None = None,
    split: str | None = None,
    subset: str | None = None,
    skip_bad_rows: bool = False,
    streaming: bool = False,
    arithmetic_rows: int = 2000,
    seed: int = 42,
):
    """Load ``dataset_name`` (a source name, hub id or local path) in the GRPO schema."""
    from datasets import Dataset

    source_name, local_path = resolve_source(dataset_name)
    if source_name == "arithmetic":
        return Dataset.from_list(make_arithmetic_rows(arithmetic_rows, seed))
    if local_path or dataset_path:
        converter = DATASET_SOURCES[source_name].converter if source_name and dataset_path else None
        load = stream_local_rows if streaming else load_local_rows
        return load(local_path or dataset_path, converter, skip_bad_rows)
    source = DATASET_SOURCES[source_name]
    return load_hub_rows(source_name, split or source.train_split, subset, streaming)


def prompt_token_counts(dataset, tokenizer) -> list[int]:
    prompts = list(dataset[PROMPT])
    encoded = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True)
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return [len(ids) for ids in encoded]


def filter_long_prompts(dataset, tokenizer, max_prompt_tokens: int):
    """Drop prompts longer than ``max_prompt_tokens`` after the chat template; log how many.

    A streamed dataset is filtered lazily, row by row, as it is read.
    """
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        logger.info("streaming: prompts longer than %d tokens are skipped as they are read", max_prompt_tokens)
        return dataset.filter(
            lambda row: (
                len(tokenizer.apply_chat_template(row[PROMPT], add_generation_prompt=True, tokenize=True))
                <= max_prompt_tokens
            )
        )
    counts = prompt_token_counts(dataset, tokenizer)
    keep = [i for i, n in enumerate(counts) if n <= max_prompt_tokens]
    dropped = len(counts) - len(keep)
    if dropped:
        logger.info("dropped %d of %d prompts longer than %d tokens", dropped, len(counts), max_prompt_tokens)
    if not keep:
        raise DataError(f"every prompt is longer than {max_prompt_tokens} tokens; raise max_seq_length.")
    return dataset.select(keep) if dropped else dataset


def prepare_splits(dataset, *, max_samples: int | None, eval_samples: int, seed: int):
    """Seeded shuffle, then hold out ``eval_samples`` rows and keep at most ``max_samples`` for training."""
    dataset = dataset.shuffle(seed=seed)
    if eval_samples >= len(dataset):
        raise DataError(f"eval_samples={eval_samples} leaves no training rows out of {len(dataset)}.")
    eval_set = dataset.select(range(eval_samples)) if eval_samples else None
    train = dataset.select(range(eval_samples, len(dataset)))
    if max_samples is not None and max_samples < len(train):
        train = train.select(range(max_samples))
    return train, eval_set


def _collate_rows(batch: list[Row]) -> list[Row]:
    return batch


def create_grpo_dataloader(
    model_name: str | None,
    dataset_name: str,
    max_samples: int | None = None,
    batch_size: int = 8,
    max_prompt_tokens: int | None = None,
    seed: int = 42,
    **load_kwargs: Any,
):
    """``(DataLoader, Dataset)`` in the GRPO schema, as in the seed README.

    ``model_name`` gives the tokenizer for the prompt-length filter; when it cannot be loaded (offline hub id)
    the filter is skipped with a warning.
    """
    from torch.utils.data import DataLoader

    dataset = load_grpo_dataset(dataset_name, seed=seed, **load_kwargs)
    dataset, _ = prepare_splits(dataset, max_samples=max_samples, eval_samples=0, seed=seed)
    if max_prompt_tokens and model_name:
        tokenizer = _try_tokenizer(model_name)
        if tokenizer is not None:
            dataset = filter_long_prompts(dataset, tokenizer, max_prompt_tokens)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate_rows)
    return loader, dataset


def _try_tokenizer(model_name: str):
    from models import load_tokenizer

    try:
        return load_tokenizer(model_name)
    except Exception as err:  # noqa: BLE001 - the filter is optional; say why it was skipped
        logger.warning("prompt-length filter skipped: tokenizer for %s not loadable (%s)", model_name, err)
        return None
