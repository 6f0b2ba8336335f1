"""Turn preference and question/answer datasets into one GRPO schema.

Output schema (column names are the constants below):

* ``prompt``: a conversation, a list of ``{"role", "content"}`` messages ending with a user turn;
* ``chosen`` / ``rejected``: the reference answers as plain strings ("" where the source has none).

Further source columns are kept so that rewards can use them, except that a column named like an argument TRL
passes to reward functions itself (``completions``, ...) is renamed (``source_completions``).  Each source has
one pure row converter, registered in ``CONVERTERS``; named datasets (``DATASET_SOURCES``) say where on the hub
they live and which converter they need.  Local files and folders are read with the converter detected from
their columns.

Bad rows: the user's own files stop at the first row that cannot be converted (``--skip-bad-rows`` skips them
all); a named public dataset skips such rows with a counted, logged reason and fails only when more than
``MAX_BAD_SHARE`` of its rows are bad, because real dumps hold a few malformed rows that should not cost a run.
"""

from __future__ import annotations

import ast
import csv
import gzip
import itertools
import json
import logging
import os
import random
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config_base import DuplicateKeyError, fail_fast_hint, repeated, unique_keys

logger = logging.getLogger(__name__)

PROMPT, CHOSEN, REJECTED = "prompt", "chosen", "rejected"
QUESTION, ANSWER = "question", "answer"
# Other names of a prompt's reference answer in common GRPO files (prompt + answer / solution; TRL's prompt-completion
# format), read as ``chosen`` when there is no ``chosen`` column.
REFERENCE_COLUMNS = (ANSWER, "solution", "completion")
ROLE, CONTENT = "role", "content"
# A whole conversation in one column (TRL's conversational format, e.g. SFT data): the turns before its final
# assistant reply are the prompt, that reply the reference.
MESSAGES = "messages"
SCHEMA_COLUMNS = (PROMPT, CHOSEN, REJECTED)

# Keyword arguments that TRL 1.15's GRPOTrainer._calculate_rewards passes to every reward function next to the
# dataset's columns: a column of the same name would raise "got multiple values for argument" or be silently
# replaced.  "image"/"images" columns switch GRPOTrainer to multimodal prompts, which a text model cannot take.
TRL_REWARD_ARGUMENTS = (
    "prompts",
    "completions",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
    "environments",
)
TRL_MULTIMODAL_COLUMNS = ("image", "images")
RESERVED_COLUMNS = TRL_REWARD_ARGUMENTS + TRL_MULTIMODAL_COLUMNS
RENAMED_COLUMN_PREFIX = "source_"

MAX_BAD_SHARE = 0.01  # a named public dataset fails only when more than this share of its rows is bad
SHOWN_BAD_ROWS = 5  # bad rows logged one by one; the rest are only counted
MIN_ROWS_FOR_SHARE = 200  # a stream checks the bad share once it has read this many rows

Row = dict[str, Any]
# A converter name; or the names a row's shape may pick among (a named source whose copies come in several
# layouts); or None: any shape the rows have
Converter = str | tuple[str, ...] | None


class DataError(ValueError):
    """Input data that cannot be used; the message names the place and the fix."""


# --------------------------------------------------------------------------------------------------
# Row converters: pure functions from one source row to the output schema (plus kept columns)


def _user(text: str) -> list[dict[str, str]]:
    return [{ROLE: "user", CONTENT: text}]


def _text(value: Any, key: str) -> str:
    """``value`` if it is a string; a number or object where text belongs is a bad row."""
    if isinstance(value, str):
        return value
    raise DataError(f"'{key}' must be text, got {_type_name(value)}")


CHAT_ROLES = ("system", "user", "assistant")


def _as_messages(value: Any, key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return _user(value)
    if isinstance(value, list) and all(isinstance(m, dict) and ROLE in m and CONTENT in m for m in value):
        unknown = sorted({str(m[ROLE]) for m in value} - set(CHAT_ROLES))
        if unknown:  # chat templates know these roles only; the error said "must end with a user turn" (fault hunt)
            raise DataError(f"'{key}': unknown role {', '.join(unknown)}; use {', '.join(CHAT_ROLES)}")
        return [{ROLE: str(m[ROLE]), CONTENT: _text(m[CONTENT], f"{key}[].content")} for m in value]
    raise DataError(f"'{key}' must be a string or a list of {{role, content}} messages, got {_type_name(value)}")


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


def checked_prompt(value: Any) -> list[dict[str, str]]:
    """A ``prompt`` as the converters leave it (text, or chat messages ending with a non-empty user turn), else a
    DataError saying what is wrong; for data that reaches the trainer without a converter."""
    return _checked_prompt(_as_messages(value, PROMPT), PROMPT)


def _checked_prompt(messages: list[dict[str, str]], key: str) -> list[dict[str, str]]:
    if not messages or messages[-1][ROLE] != "user":
        raise DataError(f"'{key}' must end with a user turn")
    if not messages[-1][CONTENT].strip():
        raise DataError(f"'{key}' is empty")
    return messages


def convert_preference(row: Row) -> Row:
    """``prompt`` (string or messages) with optional ``chosen``/``rejected`` (strings or conversations).

    Covers UltraFeedback binarized, the seed's custom format, message-list rows and prompt-only rows; a row
    without ``prompt`` takes it from the turns of ``chosen``, or of a ``messages`` conversation, before its final
    reply.  Without ``chosen``, an ``answer`` / ``solution`` / ``completion`` column is the reference (a reward
    comparing with the reference otherwise found none and scored keywords instead), else the final assistant reply
    of the prompt or ``messages`` conversation (it was dropped, and rows graded by keywords: fault hunt).
    """
    if PROMPT in row and row[PROMPT] is not None:
        conversation, key = _as_messages(row[PROMPT], PROMPT), PROMPT
    elif isinstance(row.get(CHOSEN), list):
        conversation, key = _as_messages(row[CHOSEN], CHOSEN), CHOSEN
    elif isinstance(row.get(MESSAGES), list):
        conversation, key = _as_messages(row[MESSAGES], MESSAGES), MESSAGES
    else:
        raise DataError("no 'prompt', and neither 'chosen' nor 'messages' is a conversation to take it from")
    replied = bool(conversation) and conversation[-1][ROLE] == "assistant"
    prompt = _prompt_before_reply(conversation) if replied or key == CHOSEN else conversation
    reference_key = next((key for key in (CHOSEN, *REFERENCE_COLUMNS) if row.get(key) is not None), None)
    reference = conversation[-1][CONTENT] if reference_key is None and replied else _reference_value(row, reference_key)
    return {
        **row,
        PROMPT: _checked_prompt(prompt, key),
        CHOSEN: _final_reply(reference, reference_key or CHOSEN),
        REJECTED: _final_reply(row.get(REJECTED), REJECTED),
    }


def _reference_value(row: Row, key: str | None) -> Any:
    """The reference; a numeric ``answer`` / ``solution`` (42) as its text, as for GSM8K-style rows."""
    value = row.get(key) if key else None
    if key != CHOSEN and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def convert_question_answer(row: Row) -> Row:
    """GSM8K-style ``question``/``answer``: the answer (with its ``#### 42``) is the reference."""
    question, answer = _text(row[QUESTION], QUESTION), row[ANSWER]
    if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
        raise DataError(f"'answer' must be text or a number, got {_type_name(answer)}")
    return {**row, PROMPT: _checked_prompt(_user(question), QUESTION), CHOSEN: str(answer), REJECTED: ""}


# A turn marker starts the text or a line; real dumps have it after one line break as well as after the
# canonical blank line.  "Human:" inside a line (e.g. "Assistant: Human: ...") is text, not a turn.
_HH_TURN_RE = re.compile(r"(?:^|\n+)[ \t]*(Human|Assistant):[ \t]?")
_HH_NEXT_TURN_RE = re.compile(r"\n+[ \t]*(?:Human|Assistant):")  # where a reply ends: a marker on a new line
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` -> messages; consecutive turns of one speaker are joined."""
    parts = _HH_TURN_RE.split(text)
    if len(parts) < 3:
        raise DataError("not in hh-rlhf's '\\n\\nHuman: ...\\n\\nAssistant: ...' form")
    if parts[0].strip():
        raise DataError("text before the first 'Human:' turn")
    messages: list[dict[str, str]] = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = _HH_ROLES[speaker]
        if messages and messages[-1][ROLE] == role:
            messages[-1][CONTENT] = f"{messages[-1][CONTENT]}\n\n{content.strip()}"
        else:
            messages.append({ROLE: role, CONTENT: content.strip()})
    return messages


def _shared_prefix(first: str, second: str) -> str:
    length = next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))
    return first[:length]


def _first_turn(text: str) -> str:
    """The reply up to the next turn marker (a dump may continue the dialogue after it)."""
    return _HH_NEXT_TURN_RE.split(text, maxsplit=1)[0].strip()


def convert_hh_rlhf(row: Row) -> Row:
    """Anthropic/hh-rlhf: the prompt is the dialogue that ``chosen`` and ``rejected`` share (as TRL's hh-rlhf
    script takes it), up to the Assistant turn where they part; each reference is that turn's reply."""
    chosen, rejected = _text(row.get(CHOSEN), CHOSEN), _text(row.get(REJECTED), REJECTED)
    replies = [m for m in _HH_TURN_RE.finditer(_shared_prefix(chosen, rejected)) if m.group(1) == "Assistant"]
    if not replies:
        raise DataError("'chosen' and 'rejected' differ before the first Assistant turn")
    start, end = replies[-1].start(), replies[-1].end()
    return {
        **row,
        PROMPT: _checked_prompt(parse_hh_dialogue(chosen[:start]), "shared dialogue"),
        CHOSEN: _first_turn(chosen[end:]),
        REJECTED: _first_turn(rejected[end:]),
    }


SUMMARY_INSTRUCTION = "Summarize the following Reddit post in a few sentences."


def _summary_prompt(subreddit: str, title: str, post: str) -> list[dict[str, str]]:
    header = f"SUBREDDIT: r/{subreddit}\nTITLE: {title}\n" if subreddit or title else ""
    return _user(f"{SUMMARY_INSTRUCTION}\n\n{header}POST: {post.strip()}")


def _optional_text(value: Any, key: str) -> str:
    return "" if value is None else _text(value, key)


def convert_summarize_openai(row: Row) -> Row:
    """openai/summarize_from_feedback ``comparisons``: ``info.post``, ``summaries[i].text``, ``choice``."""
    info, summaries, choice = row["info"], row["summaries"], row["choice"]
    if not isinstance(info, dict) or not (info.get("post") or info.get("article")):
        raise DataError("'info' must hold the post text in info.post")
    if not isinstance(summaries, list) or len(summaries) != 2 or not all(isinstance(s, dict) for s in summaries):
        raise DataError("'summaries' must hold two {text} objects")
    if choice not in (0, 1) or isinstance(choice, bool):
        raise DataError(f"'choice' must be 0 or 1, got {_type_name(choice)}")
    texts = [_text(s.get("text"), f"summaries[{i}].text").strip() for i, s in enumerate(summaries)]
    post = _text(info.get("post") or info.get("article"), "info.post")
    subreddit, title = (
        _optional_text(info.get("subreddit"), "info.subreddit"),
        _optional_text(info.get("title"), "info.title"),
    )
    return {**row, PROMPT: _summary_prompt(subreddit, title, post), CHOSEN: texts[choice], REJECTED: texts[1 - choice]}


_TLDR_RE = re.compile(r"^\s*TL;DR:\s*", re.IGNORECASE)


def convert_summarize_carper(row: Row) -> Row:
    """CarperAI/openai_summarize_comparisons: ``prompt`` is 'SUBREDDIT: r/...\nTITLE: ...\nPOST: ...' (the published
    rows; its card and the TL;DR SFT set end the prompt with 'TL;DR:'), answers start with 'TL;DR:'."""
    body = re.sub(r"\s*TL;DR:\s*$", "", _text(row[PROMPT], PROMPT))
    match = re.match(r"SUBREDDIT: r/(.*)\nTITLE: (.*)\nPOST: (.*)", body, re.DOTALL)
    prompt = _summary_prompt(*match.groups()) if match else _user(f"{SUMMARY_INSTRUCTION}\n\n{body}")
    return {
        **row,
        PROMPT: prompt,
        CHOSEN: _TLDR_RE.sub("", _text(row[CHOSEN], CHOSEN)).strip(),
        REJECTED: _TLDR_RE.sub("", _text(row[REJECTED], REJECTED)).strip(),
    }


def _number(value: Any) -> float | None:
    """A rating as a float; "N/A", None and other non-numbers give None."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _annotation_ratings(annotations: Any) -> list[float]:
    """The aspect ratings of one openbmb completion: ``{aspect: {"Rating": "4"}}`` (or a list per aspect)."""
    if not isinstance(annotations, dict):
        return []
    ratings = []
    for aspect in annotations.values():
        for item in aspect if isinstance(aspect, list) else [aspect]:
            rating = _number(item.get("Rating")) if isinstance(item, dict) else None
            if rating is not None:
                ratings.append(rating)
    return ratings


def _rating(completion: dict[str, Any]) -> float | None:
    """Mean aspect rating (as HuggingFaceH4 binarised it), else ``overall_score``; None when unrated."""
    ratings = _annotation_ratings(completion.get("annotations"))
    if ratings:
        return sum(ratings) / len(ratings)
    return _number(completion.get("overall_score"))


def convert_ultrafeedback_raw(row: Row) -> Row:
    """openbmb/UltraFeedback: the best-rated response is ``chosen``, the worst-rated ``rejected``.

    Rows with fewer than two rated responses keep their prompt with empty references.
    """
    completions = row["completions"]
    if not isinstance(completions, list):
        raise DataError(f"'completions' must be a list of responses, got {_type_name(completions)}")
    rated = []
    for i, completion in enumerate(completions):
        if not isinstance(completion, dict):
            raise DataError(f"'completions[{i}]' must be an object, got {_type_name(completion)}")
        response = _optional_text(completion.get("response"), f"completions[{i}].response")
        rating = _rating(completion)
        if response.strip() and rating is not None:
            rated.append((rating, response))
    rated.sort(key=lambda pair: pair[0])
    chosen, rejected = (rated[-1][1], rated[0][1]) if len(rated) >= 2 else ("", "")
    instruction = _text(row["instruction"], "instruction")
    return {**row, PROMPT: _checked_prompt(_user(instruction), "instruction"), CHOSEN: chosen, REJECTED: rejected}


CONVERTERS: dict[str, Callable[[Row], Row]] = {
    "preference": convert_preference,
    "question_answer": convert_question_answer,
    "hh_rlhf": convert_hh_rlhf,
    "summarize_openai": convert_summarize_openai,
    "summarize_carper": convert_summarize_carper,
    "ultrafeedback_raw": convert_ultrafeedback_raw,
}

ACCEPTED_SHAPES = (
    '{"prompt": str | messages, "chosen": str | messages, "rejected": str | messages} (chosen/rejected optional; '
    'without chosen, an "answer", "solution" or "completion" column is the reference); '
    '{"chosen": messages, "rejected": messages} (UltraFeedback); {"messages": conversation} (the final assistant '
    'reply is the reference); {"question", "answer"} (GSM8K); '
    '{"chosen", "rejected"} hh-rlhf dialogue strings; {"info", "summaries", "choice"} (summarize_from_feedback); '
    '{"instruction", "completions"} (openbmb/UltraFeedback)'
)


def _carper_summary_row(prompt: Any, chosen: Any) -> bool:
    """CarperAI's layout: string answers to a prompt ending with 'TL;DR:', or to a Reddit post header
    ('SUBREDDIT: r/...') with answers starting 'TL;DR:', as all the published rows are (tests/data: the
    loader took them for plain preference rows, 'TL;DR:' left in every answer, until a real file was tried)."""
    if not (isinstance(prompt, str) and isinstance(chosen, str)):
        return False
    return prompt.rstrip().endswith("TL;DR:") or (prompt.startswith("SUBREDDIT: r/") and bool(_TLDR_RE.match(chosen)))


def converter_name(record: Row, converter: Converter) -> str:
    """The converter for ``record``: the one given, or the one its shape calls for (among those allowed)."""
    if isinstance(converter, str):
        return converter
    name = detect_format(record)
    if converter and name not in converter:  # an hh-rlhf file given as summarize_from_feedback was read as hh-rlhf
        raise DataError(f"a {name} row, not one of this dataset's layouts ({', '.join(converter)})")
    return name


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
        if _carper_summary_row(prompt, row.get(CHOSEN)):
            return "summarize_carper"
        return "preference"
    if {CHOSEN, REJECTED} <= keys:
        if isinstance(row[CHOSEN], str) and _HH_TURN_RE.search(row[CHOSEN]) and "Assistant:" in row[CHOSEN]:
            return "hh_rlhf"
        return "preference"
    if MESSAGES in keys:
        return "preference"
    separator = next((sep for sep in (";", "\t", "|") if len(keys) == 1 and sep in next(iter(keys))), None)
    if separator:  # one column whose name holds the others: a CSV written with another separator
        raise DataError(
            f"unrecognised columns {sorted(keys)}: the header is separated by {separator!r}; save the CSV with "
            "commas (pandas: to_csv(path, index=False)) or as JSON Lines"
        )
    raise DataError(f"unrecognised columns {sorted(keys)}")


def _type_name(value: Any) -> str:
    return "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def rename_reserved_columns(row: Row) -> tuple[Row, list[str]]:
    """``row`` with columns named like TRL's own reward arguments renamed; also the names that were renamed."""
    clashes = [key for key in row if key in RESERVED_COLUMNS]
    if not clashes:
        return row, []
    return {(RENAMED_COLUMN_PREFIX + key if key in clashes else key): value for key, value in row.items()}, clashes


# --------------------------------------------------------------------------------------------------
# Converting rows with a tally of the bad ones

ROW_ERRORS = (DataError, KeyError, TypeError, AttributeError, IndexError, ValueError)


def bad_row_share(named_source: bool, skip_bad_rows: bool) -> float:
    """The share of bad rows a load tolerates: none for the user's own files (stop at the first, naming it),
    ``MAX_BAD_SHARE`` for a named public dataset, all with ``--skip-bad-rows``."""
    if skip_bad_rows:
        return 1.0
    return MAX_BAD_SHARE if named_source else 0.0


class ConversionReport:
    """Converts the rows of one source, counting the ones that cannot be converted by reason.

    With ``max_share`` 0 the first bad row raises, naming its place; otherwise bad rows are skipped (the first
    ``SHOWN_BAD_ROWS`` logged with their place) and ``finish`` fails when more than ``max_share`` were bad.
    """

    def __init__(self, source: str, max_share: float, streamed: bool = False):
        # A stream, whose length is unknown, checks the share as it reads; a file, at the end (3 bad rows among
        # the first 201 of 503 were refused although 0.6% is within 1%: fault hunt)
        self.source, self.max_share, self.streamed = source, max_share, streamed
        self.reasons: Counter[str] = Counter()
        self.converted = 0
        self.renamed: set[str] = set()

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())

    def convert(self, location: str, record: Any, converter: Converter) -> Row | None:
        """The record in the GRPO schema, or None when it was skipped."""
        try:
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object per row, got {_type_name(record)}")
            row = CONVERTERS[converter_name(record, converter)](record)
        except ROW_ERRORS as err:
            found = sorted(record) if isinstance(record, dict) else []
            self.skip(location, _reason(err), f"Keys found: {found}. Accepted shapes: {ACCEPTED_SHAPES}")
            return None
        self.converted += 1
        row, renamed = rename_reserved_columns(row)
        if renamed and not self.renamed.issuperset(renamed):
            self.renamed.update(renamed)
            logger.info(
                "%s: renamed column(s) %s to %s: TRL passes arguments of those names to reward functions",
                self.source,
                ", ".join(renamed),
                ", ".join(RENAMED_COLUMN_PREFIX + name for name in renamed),
            )
        return row

    def skip(self, location: str, reason: str, detail: str = "") -> None:
        """Count a bad row, or raise for it when no bad rows are tolerated."""
        if self.max_share == 0:
            detail = f" {detail}." if detail else ""
            raise DataError(f"{location}: {reason}.{detail} Fix the row or pass --skip-bad-rows.")
        self.reasons[reason] += 1
        if self.skipped <= SHOWN_BAD_ROWS:
            logger.warning("skipped %s: %s", location, reason)
        seen = self.skipped + self.converted
        if self.streamed and seen >= MIN_ROWS_FOR_SHARE and self.skipped > self.max_share * seen:
            self._fail(seen)

    def finish(self) -> None:
        """Log the tally; fail when no row is usable or more than the tolerated share was bad."""
        total = self.skipped + self.converted
        log = logger.warning if self.skipped else logger.info
        log(
            "%s: converted %d of %d rows, skipped %d%s",
            self.source,
            self.converted,
            total,
            self.skipped,
            f" ({self.summary()})" if self.skipped else "",
        )
        if not self.converted:
            raise DataError(f"{self.source}: no usable rows (empty, or every row is bad: {self.summary() or 'none'}).")
        if self.skipped > self.max_share * total:
            self._fail(total)

    def summary(self) -> str:
        return "; ".join(f"{count} x {reason}" for reason, count in self.reasons.most_common())

    def _fail(self, seen: int) -> None:
        raise DataError(
            f"{self.source}: {self.skipped} of the first {seen} rows cannot be converted, more than the "
            f"{self.max_share:.0%} a named dataset may skip ({self.summary()}). Check that the file is the named "
            "dataset, or pass --skip-bad-rows to skip every bad row."
        )


def _reason(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"missing key {err.args[0]!r}"
    if isinstance(err, DataError):
        return str(err)
    return f"unexpected value ({type(err).__name__}: {err})"


def located_rows(records: Iterable[tuple[str, Any]], converter: Converter, report: ConversionReport):
    """(location, converted row) for each (location, record) pair; bad records go to ``report``."""
    for location, record in records:
        row = report.convert(location, record, converter)
        if row is not None:
            yield location, row


def convert_records(
    records: Iterable[tuple[str, Any]], converter: Converter, report: ConversionReport
) -> Iterator[Row]:
    """The converted rows of (location, record) pairs; bad records go to ``report``."""
    return (row for _, row in located_rows(records, converter, report))


# --------------------------------------------------------------------------------------------------
# Built-in arithmetic data (the quick test and the learning demo)


def make_arithmetic_rows(count: int, seed: int = 0, max_operand: int = 50) -> list[Row]:
    """Addition and subtraction questions with the answer as ``chosen`` and an off-by-one ``rejected``; no question
    twice while there are new ones (drawn with repeats, 5 of the quick test's 16 held-out questions were also
    training questions, and it warned about its own data)."""
    rng = random.Random(seed)
    rows: list[Row] = []
    asked: set[tuple[int, str, int]] = set()
    while len(rows) < count:
        a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
        op = rng.choice("+-")
        if (a, op, b) in asked and len(asked) < 2 * max_operand**2:
            continue
        asked.add((a, op, b))
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
# Reading local files: each reader yields (location, record) and turns read errors into DataError

GZIP_MAGIC = b"\x1f\x8b"
CSV_FIELD_LIMIT = 2**31 - 1  # real CSV cells (whole posts) exceed the csv module's 128 KiB default


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _open_text(path: Path, newline: str | None = None):
    """Text (BOM-tolerant UTF-8), decompressed when the file is gzip whatever its name says."""
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
    if path.suffix == ".gz":
        raise DataError(
            f"{path}: named .gz but not gzip-compressed. Rename it without .gz if it is plain text, "
            "or compress it with gzip."
        )
    return open(path, encoding="utf-8-sig", newline=newline)


def _open_bytes(path: Path):
    """The file's bytes, decompressed when it is gzip."""
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _first_non_utf8_line(path: Path) -> int:
    """The number of the first line that is not UTF-8 (decoding in blocks does not say which line it was)."""
    with _open_bytes(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return 1


def _not_utf8(path: Path, err: UnicodeDecodeError) -> DataError:
    # A UTF-16 file (Windows editors' "Unicode") starts with its byte-order mark; anything else is most often Latin-1.
    with _open_bytes(path) as handle:
        encoding = "utf-16" if handle.read(2) in (b"\xff\xfe", b"\xfe\xff") else "latin1"
    return DataError(
        f"{path}:{_first_non_utf8_line(path)}: not UTF-8 text ({err.reason}). Re-save the file as UTF-8, "
        f"e.g. iconv -f {encoding} -t utf-8 {path.name} > fixed{''.join(path.suffixes)}."
    )


def iter_json_lines(path: Path, report: ConversionReport) -> Iterator[tuple[str, Any]]:
    """(location, parsed value) for each non-empty line; malformed lines go to ``report``."""
    lineno = 0
    try:
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line, object_pairs_hook=unique_keys)
                except DuplicateKeyError as err:
                    raise DataError(f"{path}:{lineno}: {err}; keep one of them.") from None
                except json.JSONDecodeError as err:
                    if "\x00" in line:  # UTF-16 without a byte-order mark reads as UTF-8 with NULs: every line bad
                        raise DataError(
                            f"{path}:{lineno}: NUL bytes in the text, as in UTF-16; save the file as UTF-8."
                        ) from None
                    report.skip(f"{path}:{lineno}", "malformed JSON", f"({err.msg} at column {err.colno})")
                    continue
                yield f"{path}:{lineno}", record
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: corrupt or truncated compressed data after line {lineno} ({err}). "
            "Download or compress the file again."
        ) from None


def _starts_with_array(path: Path) -> bool:
    """Whether the file's first non-blank character opens a JSON array (a JSON file saved as .jsonl or .json.gz)."""
    try:
        with _open_text(path) as handle:
            for line in handle:
                if line.strip():
                    return line.lstrip().startswith("[")
    except (UnicodeDecodeError, OSError, EOFError, zlib.error):
        return False  # the line reader reports it
    return False


def read_json_records(path: Path, report: ConversionReport) -> Iterator[tuple[str, Any]]:
    """(location, record) pairs from JSON Lines (also gzipped) or a JSON array file (whatever its suffix says:
    an array saved as .jsonl was reported line by line as malformed JSON, with the advice to skip bad rows)."""
    if path.suffix == ".json" or _starts_with_array(path):
        try:
            with _open_text(path) as handle:
                data = json.loads(handle.read(), object_pairs_hook=unique_keys)
        except DuplicateKeyError as err:
            raise DataError(f"{path}: {err}; keep one of them.") from None
        except UnicodeDecodeError as err:
            raise _not_utf8(path, err) from None
        except json.JSONDecodeError as err:
            if _starts_with_array(path):  # reading it line by line blamed line 1 and advised skipping every row
                raise DataError(
                    f"{path}: a JSON array that is not valid JSON at line {err.lineno}, column {err.colno} "
                    f"({err.msg}; a truncated file ends this way). Write the file again, or save it as JSON Lines."
                ) from None
            data = None  # a .json file may hold JSON Lines too
        if isinstance(data, list):
            yield from ((f"{path}[{i}]", record) for i, record in enumerate(data))
            return
        if isinstance(data, dict):
            yield str(path), data
            return
    yield from iter_json_lines(path, report)


MESSAGE_LIST_CELL_RE = re.compile(r"\A\s*\[\s*\{.*\}\s*\]\s*\Z", re.S)
NUMPY_ITEM_BREAK_RE = re.compile(r"\}\s*\n\s*\{")  # numpy's repr puts a line break, no comma, between items


def _message_list_cell(text: str) -> str | list[dict]:
    """A CSV cell holding a list of {role, content} messages, parsed: written as JSON, as Python's repr (pandas'
    ``to_csv`` of a message column) or as a numpy array's repr (``datasets``' ``to_csv``). Any other cell stays
    text: a chat prompt saved this way was read as one long user message that starts with "[{'role': ..."."""
    if not MESSAGE_LIST_CELL_RE.match(text):
        return text
    for parse in (json.loads, lambda t: ast.literal_eval(NUMPY_ITEM_BREAK_RE.sub("}, {", t))):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, list) and all(isinstance(m, dict) and ROLE in m and CONTENT in m for m in value):
            return value
    return text


def read_csv_records(path: Path, report: ConversionReport) -> Iterator[tuple[str, Any]]:
    """(location, record) pairs from a CSV file with a header; every cell is text (answers "42" stay "42") except
    a list of chat messages (``_message_list_cell``)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    line = 1
    try:
        with _open_text(path, newline="") as handle:
            reader = csv.DictReader(handle, strict=True)
            reader.fieldnames = _header(path, reader.fieldnames)
            for record in reader:
                line = reader.line_num
                if None in record:
                    report.skip(f"{path}:{line}", "more fields than the header has")
                elif None in record.values():
                    report.skip(f"{path}:{line}", "fewer fields than the header has")
                else:
                    yield f"{path}:{line}", {key: _message_list_cell(value) for key, value in record.items()}
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except csv.Error as err:
        raise DataError(
            f"{path}: malformed CSV after line {line} ({err}), e.g. a quote that is never closed. "
            "Fix the quoting, or save the data as JSON Lines."
        ) from None


def _header(path: Path, names: list[str] | None) -> list[str] | None:
    """A CSV header's column names without the spaces around them ("prompt, chosen" kept " chosen", no reference
    column), each once (a second "chosen" silently replaced the first: fault hunt)."""
    if names is None:
        return None
    names = [name.strip() for name in names]
    twice = repeated(names)
    if twice:
        raise DataError(f"{path}:1: the header names column(s) {', '.join(map(repr, twice))} twice; keep one of each.")
    return names


RECORD_READERS = {
    ".jsonl": read_json_records,
    ".json": read_json_records,
    ".ndjson": read_json_records,
    ".gz": read_json_records,
    ".csv": read_csv_records,
}  # file suffix -> record reader
ARROW_SUFFIXES = (".parquet",)
LOCAL_SUFFIXES = (*RECORD_READERS, *ARROW_SUFFIXES)


def is_local_path(name: str) -> bool:
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.endswith(LOCAL_SUFFIXES)


def existing_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data file or folder not found: {path}")
    if not (path.is_file() or path.is_dir()):  # a pipe or a device: reading it waits for a writer, maybe forever
        raise DataError(f"{path}: not a regular file or folder (a pipe or a device); give a data file or folder.")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    return path


def _reads_records(path: Path) -> bool:
    """Whether ``path`` is a file read record by record (JSON, JSON Lines, CSV) rather than through Arrow."""
    if path.is_dir():
        return False
    if path.suffix in RECORD_READERS:
        return True
    if path.suffix in ARROW_SUFFIXES:
        return False
    raise DataError(f"{path}: unsupported file type; use .jsonl, .jsonl.gz, .json, .csv, .parquet or a folder.")


def _file_records(path: Path, report: ConversionReport) -> Iterator[tuple[str, Any]]:
    if path.suffixes[-2:] == [".csv", ".gz"]:  # gzipped CSV (".gz" alone is JSON Lines)
        return read_csv_records(path, report)
    return RECORD_READERS[path.suffix](path, report)


def load_local_rows(path: str | Path, converter: Converter = None, max_share: float = 0.0, split: str | None = None):
    """A converted ``datasets.Dataset`` from a local file or ``save_to_disk`` folder (``split``: the one to take
    from a saved DatasetDict, e.g. the named source's training split)."""
    path = existing_path(path)
    report = ConversionReport(str(path), max_share)
    if not _reads_records(path):
        return convert_dataset(read_arrow_source(path, split), converter, report)
    located = list(located_rows(_file_records(path, report), converter, report))
    report.finish()
    return dataset_from_rows(located)


def dataset_from_rows(located: list[tuple[str, Row]]):
    """An Arrow dataset of the rows; a column whose type changes between rows is named with its first odd row."""
    import pyarrow
    from datasets import Dataset

    # every row gets every column (datasets takes the columns from the first row: a key missing there was dropped)
    columns = dict.fromkeys(key for _, row in located for key in row)
    try:
        return Dataset.from_list([{key: row.get(key) for key in columns} for _, row in located])
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, TypeError, OverflowError) as err:
        raise DataError(_mixed_type_message(located, err)) from None


INT64 = range(-(2**63), 2**63)  # Arrow's integers: a larger one (an unsigned 64-bit id) ended in "unexpected error"


def _shape(value: Any) -> str:
    """A value's type down to its items ("list of int", "object {a: int}"): Arrow needs one per column."""
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        return "an integer beyond 64 bits (store it as text)"
    if isinstance(value, dict):
        return "object {" + ", ".join(f"{key}: {_shape(value[key])}" for key in sorted(value)) + "}"
    if isinstance(value, list):
        kinds = sorted({_shape(item) for item in value if item is not None})
        return f"list of {' and '.join(kinds)}" if kinds else "list"
    return _type_name(value)


def _mixed_type_message(located: list[tuple[str, Row]], err: Exception) -> str:
    first_seen: dict[str, str] = {}
    for location, row in located:
        for key, value in row.items():
            if value is None:
                continue
            shape = _shape(value)
            if " and " in shape or "beyond 64 bits" in shape:  # mixed within this one value
                return f"{location}: column '{key}' holds {shape}. Give the column one type in every row, or remove it."
            expected = first_seen.setdefault(key, shape)
            if shape != expected:
                return (
                    f"{location}: column '{key}' holds {_shape(value)} here but {expected} in earlier rows. "
                    "Give the column one type in every row, or remove it."
                )
    return f"the rows cannot be stored together ({str(err).splitlines()[0]}). Give every column one type."


def read_arrow_source(path: Path, split: str | None = None):
    """Parquet or a ``save_to_disk`` folder (a DatasetDict yields ``split`` when it has it, else its train split,
    else its first); read errors -> DataError."""
    import datasets
    import pyarrow

    try:
        if not path.is_dir():
            return datasets.load_dataset("parquet", data_files=str(path), split="train")
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise DataError(
            f"{path}: a folder but not one written by datasets' save_to_disk ({err}). Give a .jsonl, .csv or "
            ".parquet file, or a save_to_disk folder."
        ) from None
    except IndexError:  # datasets cannot load a saved dataset of zero rows: it has no Arrow file to concatenate
        raise DataError(f"{path}: the saved dataset (or one of its splits) has no rows.") from None
    except (datasets.exceptions.DatasetGenerationError, pyarrow.ArrowException, OSError, ValueError) as err:
        raise _unreadable_parquet(path, err) from None
    if isinstance(loaded, datasets.DatasetDict):
        # ultrafeedback_binarized's splits start with train_sft: its preference split is train_prefs
        chosen = next(name for name in (split, "train", *loaded) if name in loaded)
        logger.info("%s: using split '%s' of %s", path, chosen, list(loaded))
        return loaded[chosen]
    return loaded


def _unreadable_parquet(path: Path, err: Exception) -> DataError:
    """The error for a Parquet file that cannot be read: no rows, or which part of it is broken."""
    if _parquet_rows(path) == 0:  # datasets fails on it with "BatchSize must be greater than 0"
        return DataError(f"{path}: the Parquet file has no rows.")
    cause = err.__cause__ or err
    return DataError(
        f"{path}: cannot be read as Parquet ({type(cause).__name__}: {str(cause).splitlines()[0]}). "
        "Download or write the file again."
    )


def _parquet_rows(path: Path) -> int | None:
    """The row count a Parquet file's footer gives, or None when it has no readable footer."""
    import pyarrow
    import pyarrow.parquet

    try:
        return pyarrow.parquet.read_metadata(str(path)).num_rows
    except (pyarrow.ArrowException, OSError):
        return None


def convert_dataset(dataset, converter: Converter, report: ConversionReport):
    """Map an Arrow-backed dataset through its converter in batches (fast for large sets), then check the tally."""
    if len(dataset) == 0:
        raise DataError(f"{report.source}: the dataset has no rows.")
    try:
        name = converter_name(dataset[0], converter)
    except DataError as err:  # said without the file (fault hunt): the same line as a JSON Lines file gets
        raise DataError(f"{report.source} (row 0): {err}. Accepted shapes: {ACCEPTED_SHAPES}") from None
    converted = dataset.map(
        _batch_converter(name, report),
        batched=True,
        batch_size=2000,
        with_indices=True,
        remove_columns=dataset.column_names,
        load_from_cache_file=False,  # a cached result would skip the converter and so the bad-row tally
        desc=f"converting {Path(report.source).name}",
    )
    report.finish()
    return converted


def _batch_converter(converter: str, report: ConversionReport):
    """A batched ``map`` function: column batch in, converted column batch out (bad rows left out)."""

    def convert_batch(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        records = (
            (f"{report.source} row {i}", dict(zip(batch, values))) for i, values in zip(indices, zip(*batch.values()))
        )
        rows = list(convert_records(records, converter, report))
        return {key: [row[key] for row in rows] for key in (rows[0] if rows else batch)}

    return convert_batch


# --------------------------------------------------------------------------------------------------
# Streaming: one generator reads any source row by row, converting as it goes


def stream_rows(
    path: str | None, converter: Converter, max_share: float, hub: dict | None = None, split: str | None = None
):
    """A converted ``datasets.IterableDataset`` over a local file/folder or a hub dataset, read lazily (``split``:
    the one to take from a saved DatasetDict, as in ``read_arrow_source``)."""
    import datasets

    if path is not None:
        path = str(existing_path(path))
    arguments = {"path": path, "converter": converter, "max_share": max_share, "hub": hub, "split": split}
    stream = datasets.IterableDataset.from_generator(_streamed_rows, gen_kwargs=arguments)
    if next(iter(stream), None) is None:  # fail before any model is loaded
        raise DataError(f"{path or hub['path']}: the dataset has no rows.")
    return stream


def _streamed_rows(
    path: str | None, converter: Converter, max_share: float, hub: dict | None, split: str | None
) -> Iterator[Row]:
    report = ConversionReport(path or hub["path"], max_share, streamed=True)
    columns: list[str] | None = None
    for location, row in located_rows(_raw_stream(path, hub, report, split), converter, report):
        columns = columns or list(row)
        yield _with_columns(row, columns, location)
    report.finish()


def _with_columns(row: Row, columns: list[str], location: str) -> Row:
    """A streamed row with the first row's columns: one it lacks is None, as a loaded dataset fills it (a reward's
    column missing from some rows was a KeyError in TRL); one the first row lacks cannot be added to a stream."""
    added = [key for key in row if key not in columns]
    if added:
        raise DataError(
            f"{location}: column(s) {', '.join(added)} are not in the first row, and a stream takes its columns "
            "from its first row. Give them (null) in the first row, or load without streaming."
        )
    return {key: row.get(key) for key in columns}


def _raw_stream(
    path: str | None, hub: dict | None, report: ConversionReport, split: str | None = None
) -> Iterator[tuple[str, Any]]:
    """(location, record) pairs of a source, read lazily."""
    import datasets

    if path is None:
        raw = datasets.load_dataset(**hub, streaming=True)
    elif _reads_records(Path(path)):
        yield from _file_records(Path(path), report)
        return
    elif Path(path).is_dir():
        raw = read_arrow_source(Path(path), split).to_iterable_dataset()
    else:
        yield from _streamed_parquet(Path(path), report)
        return
    yield from ((f"{report.source} row {i}", record) for i, record in enumerate(raw))


def _streamed_parquet(path: Path, report: ConversionReport) -> Iterator[tuple[str, Any]]:
    """(location, record) pairs of a Parquet file read lazily; a broken file gives the same error as unstreamed."""
    import datasets
    import pyarrow

    try:
        raw = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)
        yield from ((f"{report.source} row {i}", record) for i, record in enumerate(raw))
    except (datasets.exceptions.DatasetGenerationError, pyarrow.ArrowException, OSError, ValueError) as err:
        raise _unreadable_parquet(path, err) from None


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
    # Local copies come in more than one layout: each row's shape picks the converter among these
    # (summarize_from_feedback: OpenAI's comparisons or CarperAI's prompt/chosen/rejected).
    local_layouts: tuple[str, ...] = ()


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
        local_layouts=("summarize_openai", "summarize_carper"),
    ),
    "arithmetic": DatasetSource(
        "", "preference", description="Built in: generated addition/subtraction questions with numeric answers."
    ),
}
HUB_ID_TO_SOURCE = {source.hub_id.lower(): name for name, source in DATASET_SOURCES.items() if source.hub_id}
# Known on the hub but not loaded by name: loading the source it resembles would train on other data, silently.
HUB_IDS_BY_FILE = {
    "carperai/openai_summarize_comparisons": "its layout (prompt 'SUBREDDIT: ... POST: ...', answers 'TL;DR: ...')"
}


def _hub_arguments(source_name: str, split: str, subset: str | None) -> dict:
    source = DATASET_SOURCES[source_name]
    return {"path": source.hub_id, "name": source.hub_config, "data_dir": subset or source.data_dir, "split": split}


def load_hub_rows(
    source_name: str, split: str, subset: str | None = None, streaming: bool = False, max_share: float = MAX_BAD_SHARE
):
    import datasets

    source = DATASET_SOURCES[source_name]
    arguments = _hub_arguments(source_name, split, subset)
    try:
        if streaming:
            return stream_rows(None, source.converter, max_share, hub=arguments)
        raw = datasets.load_dataset(**arguments)
    except (ConnectionError, OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(
            f"dataset '{source_name}' ({source.hub_id}, split {split}) could not be loaded: "
            f"{str(err).splitlines()[0]}. "
            f"Without hub access give a local copy: --dataset {source_name} --dataset-path PATH, where PATH is a "
            f".jsonl/.parquet file or a folder made by datasets.load_dataset('{source.hub_id}').save_to_disk(PATH)."
            f"{fail_fast_hint()}"
        ) from None
    return convert_dataset(raw, source.converter, ConversionReport(source.hub_id, max_share))


# --------------------------------------------------------------------------------------------------
# Public API


def local_copy_converter(source_name: str | None) -> Converter:
    """The converter for a local copy of a named source (the layouts it may have, where its copies vary); None
    (each row's shape decides) for a user's own file."""
    source = DATASET_SOURCES.get(source_name)
    return None if source is None else source.local_layouts or source.converter


def resolve_source(dataset_name: str) -> tuple[str | None, str | None]:
    """(source name, local path) for a dataset name, hub id or local path."""
    if dataset_name in DATASET_SOURCES:
        return dataset_name, None
    if dataset_name.lower() in HUB_ID_TO_SOURCE:
        return HUB_ID_TO_SOURCE[dataset_name.lower()], None
    if dataset_name.lower() in HUB_IDS_BY_FILE:
        raise DataError(
            f"{dataset_name} is not loaded from the hub by name; download its files and give one with --custom-data "
            f"({HUB_IDS_BY_FILE[dataset_name.lower()]} is recognised), or use --dataset openai_summarize for OpenAI's "
            "own comparisons."
        )
    if is_local_path(dataset_name):
        return None, dataset_name
    raise DataError(
        f"unknown dataset {dataset_name!r}. Use one of {', '.join(DATASET_SOURCES)}, a hub id of one of them "
        f"({', '.join(s.hub_id for s in DATASET_SOURCES.values() if s.hub_id)}), or a local file or folder."
    )


def load_grpo_dataset(
    dataset_name: str | os.PathLike,
    *,
    dataset_path: str | None = None,
    split: str | None = None,
    subset: str | None = None,
    skip_bad_rows: bool = False,
    streaming: bool = False,
    arithmetic_rows: int = 2000,
    seed: int = 42,
):
    """Load ``dataset_name`` (a source name, hub id or local path) in the GRPO schema.

    A named source (also from a local copy with ``dataset_path``) skips up to ``MAX_BAD_SHARE`` bad rows; a
    custom file stops at the first unless ``skip_bad_rows``.
    """
    from datasets import Dataset

    if isinstance(dataset_name, os.PathLike):
        dataset_name = os.fspath(dataset_name)
    if not isinstance(dataset_name, str):  # an AttributeError from deep inside otherwise
        raise DataError(f"dataset_name must be a dataset name, hub id or path, got {type(dataset_name).__name__}.")
    if not dataset_name.strip():  # a KeyError: None (fourth hunt)
        raise DataError(f"dataset_name is empty; give one of {', '.join(DATASET_SOURCES)}, a hub id or a file path.")
    source_name, local_path = resolve_source(dataset_name)
    ignored = [flag for flag, value in (("--dataset-path", dataset_path), ("--dataset-subset", subset)) if value]
    if local_path and ignored:  # a local file is read as it is; these apply to a named dataset (fault hunt: silent)
        raise DataError(
            f"{dataset_name} is a local file, read as it is; {' and '.join(ignored)} apply to a named dataset "
            "(--dataset ultrafeedback / hh_rlhf / openai_summarize); drop them."
        )
    if source_name == "arithmetic":
        if ignored:  # the quick test's preset names it: a user's own file was silently not read (fault hunt)
            raise DataError(
                f"the arithmetic dataset is generated, not read: {' and '.join(ignored)} do not apply. For your own "
                "file use --custom-data PATH (also with --quick-test)."
            )
        if isinstance(arithmetic_rows, bool) or not isinstance(arithmetic_rows, int) or arithmetic_rows < 1:
            raise DataError(f"arithmetic_rows={arithmetic_rows!r}: give a positive number of questions.")
        return Dataset.from_list(make_arithmetic_rows(arithmetic_rows, seed))
    if dataset_path and subset:
        raise DataError(
            f"--dataset-subset {subset} selects a part of {DATASET_SOURCES[source_name].hub_id} on the hub; a local "
            "copy (--dataset-path) is read whole. Drop --dataset-subset, or give that subset's file."
        )
    max_share = bad_row_share(source_name is not None, skip_bad_rows)
    if local_path or dataset_path:
        default_split = DATASET_SOURCES[source_name].train_split if source_name and dataset_path else None
        if split is not None and split != default_split:
            _check_split_applies(existing_path(local_path or dataset_path), split)
        converter = local_copy_converter(source_name) if dataset_path else None
        if streaming:
            return stream_rows(local_path or dataset_path, converter, max_share, split=split or default_split)
        return load_local_rows(local_path or dataset_path, converter, max_share, split or default_split)
    source = DATASET_SOURCES[source_name]
    return load_hub_rows(source_name, split or source.train_split, subset, streaming, max_share)


def _check_split_applies(path: Path, split: str) -> None:
    """A split asked of a local copy must be one it has: a file has none, and a ``save_to_disk`` folder has its own
    (taking another one instead would train on the wrong rows without a word; a user's split, fault hunt). A named
    source's own training split is not asked here: it is the default, read from whatever the copy has."""
    if path.is_dir() and not any((path / name).is_file() for name in ("dataset_dict.json", "state.json")):
        return  # not written by save_to_disk: reading it says so
    if not path.is_dir():
        raise DataError(
            f"{path} is one file, read whole: split={split!r} applies to a dataset on the hub or a save_to_disk "
            "folder with splits. Drop split, or give that split's own file."
        )
    splits = list(_saved_splits(path))
    if split not in splits:
        raise DataError(
            f"{path} has no split {split!r}; its splits: {', '.join(splits) or 'none (one dataset)'}. "
            "Give one of them, or drop split."
        )


def _saved_splits(path: Path):
    """The split names of a ``save_to_disk`` folder (none for a single dataset), read from its index file."""
    index = path / "dataset_dict.json"
    if not index.is_file():
        return ()
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("splits", ())
    except (OSError, ValueError):
        return ()


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
        # a warning: the run trains on fewer prompts than it said it loaded (7 of 8 went silently at INFO)
        logger.warning(
            "dropped %d of %d prompts longer than %d tokens (max_seq_length - max_completion_length); raise "
            "max_seq_length to keep them",
            dropped,
            len(counts),
            max_prompt_tokens,
        )
    if not keep:
        raise DataError(f"every prompt is longer than {max_prompt_tokens} tokens; raise max_seq_length.")
    return dataset.select(keep) if dropped else dataset


def prepare_splits(dataset, *, max_samples: int | None, eval_samples: int, seed: int):
    """Seeded shuffle, then hold out ``eval_samples`` rows and keep at most ``max_samples`` for training.  A stream
    is read in order (shuffling it would mean reading it all): see ``_stream_splits``."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        return _stream_splits(dataset, max_samples=max_samples, eval_samples=eval_samples)
    dataset = dataset.shuffle(seed=seed)
    if eval_samples >= len(dataset):
        raise _no_training_rows(eval_samples, len(dataset))
    eval_set = dataset.select(range(eval_samples)) if eval_samples else None
    train = dataset.select(range(eval_samples, len(dataset)))
    if max_samples is not None and max_samples < len(train):
        train = train.select(range(max_samples))
    if eval_set is not None:
        warn_if_held_out_prompts_are_trained(train, eval_set)
    return train, eval_set


def _stream_splits(stream, *, max_samples: int | None, eval_samples: int):
    """A stream in order: its first ``eval_samples`` rows held out (kept in memory), then at most ``max_samples``
    rows for training (eval_samples was silently ignored with streaming: fault hunt)."""
    if not eval_samples:
        return (stream.take(max_samples) if max_samples else stream), None
    first = list(itertools.islice(stream, eval_samples + 1))  # the held-out rows and whether one more follows
    if len(first) <= eval_samples:
        raise _no_training_rows(eval_samples, len(first))
    eval_set = dataset_from_rows([(f"held-out row {i}", row) for i, row in enumerate(first[:eval_samples])])
    train = stream.skip(eval_samples)
    return (train.take(max_samples) if max_samples else train), eval_set


def _no_training_rows(eval_samples: int, rows: int) -> DataError:
    return DataError(
        f"eval_samples={eval_samples} leaves no training rows out of {rows}: hold out fewer "
        f"(--eval-samples N with N < {rows}, or 0 for none)."
    )


def warn_if_held_out_prompts_are_trained(train, eval_set) -> None:
    """Held-out rows whose prompt is also a training prompt (a file with duplicate rows): their scores measure
    memory, not generalisation.  Warned with the count."""
    seen = {json.dumps(prompt, sort_keys=True) for prompt in train[PROMPT]}
    leaked = sum(json.dumps(prompt, sort_keys=True) in seen for prompt in eval_set[PROMPT])
    if leaked:
        logger.warning(
            "%d of %d held-out prompts are also training prompts (duplicate rows in the data); their held-out "
            "scores overstate what the model learned. Remove duplicates to evaluate on unseen prompts.",
            leaked,
            len(eval_set),
        )


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

    for name, value in (
        ("max_samples", max_samples),
        ("batch_size", batch_size),
        ("max_prompt_tokens", max_prompt_tokens),
    ):
        # an empty dataset or a bare TypeError far from the call otherwise (fault hunt)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise DataError(f"create_grpo_dataloader: {name}={value!r} must be a positive integer (or None).")
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
