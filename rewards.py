"""Reward functions with TRL's signature ``(completions, **kwargs) -> list[float | None]``.

Three built-ins, parameterised by ``get_*_reward`` factories and registered in ``REWARD_FACTORIES``:

* ``accuracy``: where the reference (the ``chosen`` column) has a final answer (``\\boxed{}``, GSM8K's
  ``#### 42``, "the answer is", "정답은", or a reference that is itself a number or expression), math-verify
  compares the completion's final answer with it: 1.0 or 0.0 (``math_answers``).  A marked answer that is words
  compares as normalised text; one that math-verify cannot parse scores None (left out of TRL's weighted sum).
  Where the reference is free text, the word-overlap F1 with ``chosen`` minus the F1 with ``rejected`` (range
  -1..1).  Where no reference exists, 1.0 when the completion contains one of ``correct_keywords``, else 0.0.
  ``accuracy_modes`` counts the rows of each kind.
* ``length``: ``exp(-0.5 * (ln((n+1)/(optimal_length+1)) / ln 2) ** 2)`` with ``n`` the completion length
  in words (or characters): 1.0 at the optimum, 0.61 at half or double it, smooth and bounded in 0..1.
* ``custom``: a user function (``"function": "file.py:fn"`` or ``"package.module:fn"``), or the built-in
  repetition check; positive scores are multiplied by ``reward_scale``, negative ones by
  ``|penalty_scale|`` with the sign of ``penalty_scale`` (so a raw -1 scores ``penalty_scale``).

Every callable is wrapped by ``guarded_reward``, so that a reward never stops or hangs training: it runs in a
daemon worker thread; a call past ``reward_timeout`` seconds scores None for the batch (``rewards/<name>/timeouts``);
a reward that raises (``SystemExit`` included) or returns NaN/inf or the wrong count scores 0.0 for the affected
completions (``rewards/<name>/failures``); a None score is kept (TRL leaves it out of the weighted sum).  Each
kind of problem is logged once per reward.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import inspect
import itertools
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from config import REWARD_NAMES, REWARD_WEIGHT_PRESETS, ConfigError, read_json_object
from math_answers import (
    FREE_TEXT,
    KEYWORDS,
    MATH,
    TEXT_ANSWER,
    UNPARSEABLE,
    answer_clause,
    count_modes,
    math_matches,
    parse_reference,
    text_matches,
    words,
)

logger = logging.getLogger(__name__)

CHOSEN_KEY = "chosen"
REJECTED_KEY = "rejected"
RewardFunc = Callable[..., list[float | None]]

DEFAULT_KEYWORDS = ["correct", "right", "yes", "정확", "맞아"]
# The reward config's schema: section -> key -> accepted types.  ``weight`` sets the reward's weight in
# TRL's weighted sum; the seed's ``length_weight`` is the same for the length reward.
REWARD_CONFIG_SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "accuracy": {"correct_keywords": (list,), "weight": (int, float)},
    "length": {"optimal_length": (int, float), "length_weight": (int, float), "unit": (str,), "weight": (int, float)},
    "custom": {"function": (str,), "reward_scale": (int, float), "penalty_scale": (int, float), "weight": (int, float)},
}
LENGTH_UNITS = ("words", "characters")


# --------------------------------------------------------------------------------------------------
# Text helpers


def completion_text(completion: Any) -> str:
    """Plain text of a completion: a string, or the assistant contents of a message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, list):
        return "".join(completion_text(m) for m in completion if not isinstance(m, dict) or m.get("role") != "user")
    raise TypeError(f"completion of type {type(completion).__name__}; expected str or list of messages")


def token_f1(candidate: str, reference: str) -> float:
    """SQuAD-style unigram F1 between two texts (0 when either is empty)."""
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 0.0
    ref_counts: dict[str, int] = {}
    for w in ref:
        ref_counts[w] = ref_counts.get(w, 0) + 1
    common = 0
    for w in cand:
        if ref_counts.get(w, 0) > 0:
            common += 1
            ref_counts[w] -= 1
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _column(kwargs: dict[str, Any], key: str, count: int) -> list[str]:
    values = kwargs.get(key)
    if values is None:
        return [""] * count
    return [completion_text(v) if v is not None else "" for v in values]


# --------------------------------------------------------------------------------------------------
# Built-in rewards


def get_accuracy_reward(correct_keywords: Iterable[str] = DEFAULT_KEYWORDS) -> RewardFunc:
    keywords = [k.lower() for k in correct_keywords]

    def accuracy_reward(completions: list, **kwargs: Any) -> list[float | None]:
        chosen = _column(kwargs, CHOSEN_KEY, len(completions))
        rejected = _column(kwargs, REJECTED_KEY, len(completions))
        return [
            score_accuracy(completion_text(c), ref, rej, keywords)
            for c, ref, rej in zip(completions, chosen, rejected, strict=True)
        ]

    return accuracy_reward


@functools.lru_cache(maxsize=256)
def _keyword_re(keyword: str) -> re.Pattern:
    """A keyword as a word start ("incorrect" is not "correct"); English keywords as whole words ("yesterday" is not
    "yes"), others as stems ("정확합니다" holds "정확")."""
    end = r"(?!\w)" if keyword.isascii() else ""
    return re.compile(rf"(?<!\w){re.escape(keyword)}{end}", re.IGNORECASE)


def score_accuracy(text: str, chosen: str, rejected: str, keywords: list[str]) -> float | None:
    """One completion's accuracy against its reference, by the reference's mode (see the module docstring)."""
    reference = parse_reference(chosen)
    if reference.mode == MATH:
        return float(math_matches(reference, text))
    if reference.mode == TEXT_ANSWER:
        return float(text_matches(reference, text))
    if reference.mode == UNPARSEABLE:
        return None
    if reference.mode == KEYWORDS:
        return 1.0 if any(_keyword_re(k).search(text) for k in keywords) else 0.0
    # a marked answer is graded by itself: "The answer is Paris." against "Paris" was 0.4, below "Not Paris"
    text = answer_clause(text) or text
    score = token_f1(text, chosen)
    if rejected.strip():
        score -= token_f1(text, rejected)
    return score


MODE_LABELS = {
    MATH: "math answer (math-verify)",
    TEXT_ANSWER: "marked text answer",
    FREE_TEXT: "free text (word F1)",
    KEYWORDS: "no reference (keywords)",
    UNPARSEABLE: "unparseable answer (None)",
}


def accuracy_modes(dataset, limit: int | None = None) -> dict[str, int]:
    """Count and log how the accuracy reward will score the dataset's rows (its ``chosen`` references).

    ``limit`` reads only the first rows (for a streamed or very large dataset).  Parsed references stay cached,
    so training does not parse them again.
    """
    rows = itertools.islice(iter(dataset), limit)
    counts = count_modes(completion_text(row.get(CHOSEN_KEY) or "") for row in rows)
    total = sum(counts.values())
    shown = ", ".join(f"{MODE_LABELS[mode]} {n}" for mode, n in counts.items() if n)
    logger.info("accuracy reward on %d rows%s: %s", total, " (first rows)" if limit else "", shown or "none")
    if counts[UNPARSEABLE]:
        logger.warning(
            "%d references hold an answer math-verify cannot parse; their completions score None (left out of "
            "the reward sum). Write the answer as a number, LaTeX (\\frac{1}{2}) or \\boxed{...}.",
            counts[UNPARSEABLE],
        )
    if total and counts[KEYWORDS] == total:  # said only in the INFO line, a misnamed column went unnoticed
        logger.warning(
            "no row has a reference answer (a '%s' column, or an answer column the loader maps to it): the accuracy "
            "reward only checks whether a completion contains one of its correct_keywords. Name the reference "
            "column '%s' (or 'answer'), or leave accuracy out of reward_functions.",
            CHOSEN_KEY,
            CHOSEN_KEY,
        )
    return counts


def get_length_reward(optimal_length: float = 150, unit: str = "words") -> RewardFunc:
    if unit not in LENGTH_UNITS:
        raise ConfigError(f"length.unit={unit!r}; choose one of {', '.join(LENGTH_UNITS)}.")
    number = isinstance(optimal_length, (int, float)) and not isinstance(optimal_length, bool)
    if not (number and 0 < optimal_length < math.inf):  # "150" raised a TypeError, True counted as 1
        raise ConfigError(f"length.optimal_length={optimal_length!r} must be a positive, finite number.")
    measure = (lambda t: len(t.split())) if unit == "words" else len

    def length_reward(completions: list, **kwargs: Any) -> list[float]:
        return [
            math.exp(-0.5 * (math.log((measure(completion_text(c)) + 1) / (optimal_length + 1)) / math.log(2)) ** 2)
            for c in completions
        ]

    return length_reward


def repetition_score(text: str) -> float:
    """1.0 for text without repeated word 3-grams, down to -1.0 for pure repetition or empty text."""
    tokens = words(text)
    if not tokens:
        return -1.0
    trigrams = list(zip(tokens, tokens[1:], tokens[2:]))
    if not trigrams:
        return 1.0
    repeated = 1 - len(set(trigrams)) / len(trigrams)
    return 1.0 - 2.0 * repeated


def default_custom_reward(completions: list, **kwargs: Any) -> list[float]:
    """The built-in custom reward: penalise empty and repetitive completions."""
    return [repetition_score(completion_text(c)) for c in completions]


def scale_signed(value: float, reward_scale: float, penalty_scale: float) -> float:
    """Positive scores times ``reward_scale``; negative ones times ``|penalty_scale|``, signed like it."""
    if value >= 0:
        return value * reward_scale
    return abs(value) * penalty_scale


def get_custom_reward(
    function: str | None = None, reward_scale: float = 1.0, penalty_scale: float = -0.5
) -> RewardFunc:
    inner = load_function(function) if function else default_custom_reward

    def custom_reward(completions: list, **kwargs: Any) -> list[float | None]:
        raw = inner(completions=completions, **kwargs)
        # None stays None: TRL leaves it out of the sum (it was float(None), a failure scoring 0.0: fault hunt)
        return [None if v is None else scale_signed(float(v), reward_scale, penalty_scale) for v in raw]

    return custom_reward


REWARD_FACTORIES: dict[str, Callable[..., RewardFunc]] = {
    "accuracy": get_accuracy_reward,
    "length": get_length_reward,
    "custom": get_custom_reward,
}


# --------------------------------------------------------------------------------------------------
# Loading user functions


def load_function(spec: str) -> RewardFunc:
    """``path/to/file.py:fn``, ``package.module:fn`` or ``package.module.fn`` -> the callable.

    Any failure (file missing, import or syntax error, no such function) is one ``ConfigError`` naming the place.
    """
    if ":" in spec:
        module_part, _, attr = spec.rpartition(":")
    else:
        module_part, _, attr = spec.rpartition(".")
    if not module_part or not attr:
        raise ConfigError(f"reward function {spec!r}: use 'path/to/file.py:function' or 'package.module.function'.")
    module = _load_module(spec, module_part)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"reward function {spec!r}: {module_part} has no function {attr!r}{_what_it_is(module)}")
    _check_reward_signature(spec, fn)
    return fn


def _what_it_is(module) -> str:
    """The rest of a "no such function" message: what the module defines, or that it is one of this package's own
    modules (a user's rewards.py beside them was shadowed by ours, and the message listed our internals: hunt)."""
    source = Path(getattr(module, "__file__", None) or "")
    if source.parent == Path(__file__).resolve().parent:
        return (
            f"; {module.__name__} is this package's own module ({source}), which shadows a file of yours with that "
            f"name: give yours as a path (path/to/{source.name}:function) or rename it."
        )
    defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
    return f" (it defines: {', '.join(defined) or 'no functions'}); fix the function's name."


def _check_reward_signature(spec: str, fn: Callable) -> None:
    """TRL calls every reward as ``fn(prompts=..., completions=..., completion_ids=..., <dataset columns>=...)``: a
    function without ``**kwargs`` (or a class) failed on every call and trained on zero rewards (fault hunt)."""
    fix = "define it as def name(completions, **kwargs) returning one float (or None) per completion."
    if inspect.isclass(fn):
        raise ConfigError(f"reward function {spec!r} is a class, not a function; {fix}")
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to read, it will be guarded like any other
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        shown = ", ".join(p.name for p in parameters)
        raise ConfigError(
            f"reward function {spec!r} takes ({shown}) but TRL passes prompts, completions, completion_ids and the "
            f"dataset's columns by keyword; {fix}"
        )


def _importable_from_the_working_directory() -> None:
    """``my_rewards.score`` names a module beside the user, as ``python -m`` would find it; ``python
    path/to/train_grpo.py`` puts only the script's own folder on the path (appended: installed packages win)."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def _load_module(spec: str, module_part: str):
    """Import a reward module from a ``.py`` path or a dotted name, turning any failure into a ConfigError."""
    path = Path(module_part)
    if module_part.endswith(".py") and not path.is_file():
        raise ConfigError(f"reward function {spec!r}: file {path} not found; give an existing .py file.")
    try:
        if not module_part.endswith(".py"):
            _importable_from_the_working_directory()
            return _import_bounded(spec, lambda: importlib.import_module(module_part))
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        _import_bounded(spec, lambda: module_spec.loader.exec_module(module))
        return module
    except SyntaxError as err:
        raise ConfigError(
            f"reward function {spec!r}: syntax error in {err.filename}, line {err.lineno}: {err.msg}; fix that line."
        ) from None
    except (Exception, SystemExit) as err:  # noqa: BLE001 - importing user code may raise anything
        raise ConfigError(
            f"reward function {spec!r}: importing {module_part} failed ({type(err).__name__}: {err}); fix the module"
            " or install what it imports."
        ) from None


IMPORT_TIMEOUT_S = 300.0  # a reward module that waits when imported (a download, input(), a lock) hung the run


def _import_bounded(spec: str, load: Callable[[], Any]) -> Any:
    """``load()`` (an import of user code) in a worker thread, given up after ``IMPORT_TIMEOUT_S`` with a
    ConfigError; what it raises is raised here. The thread is abandoned, not killed (as a stuck reward call)."""
    finished, module = _run_in_worker(load, f"import {spec}", IMPORT_TIMEOUT_S)
    if not finished:
        raise ConfigError(
            f"reward function {spec!r}: importing it did not finish in {IMPORT_TIMEOUT_S:g} s; the module waits "
            "for something when imported (a download, input(), a server?): move that into the function."
        )
    return module


# --------------------------------------------------------------------------------------------------
# Safety wrapper: timeouts, failures, bad values

DEFAULT_REWARD_TIMEOUT = 60.0
STOP_GRACE_S = 2.0  # after Ctrl-C/SIGTERM, how long a running reward call may still take
_POLL_S = 0.25
_stop_requested = threading.Event()


def cancel_pending_rewards() -> None:
    """Give a reward call that is still running at most ``STOP_GRACE_S`` more seconds (call on Ctrl-C/SIGTERM).

    The graceful stop saves a checkpoint after the current step; a stuck reward would otherwise hold that step
    for up to ``reward_timeout``.
    """
    _stop_requested.set()


class _Warnings:
    """One warning per reward and kind of problem."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._seen:
                return
            self._seen.add(kind)
        logger.warning("reward '%s': %s", self.name, message)


class _CallWarnings:
    """One call's view of its reward's warnings, silent once the call is abandoned: it may finish after the run's
    log handlers are gone, and logging then printed "--- Logging error ---" with a traceback."""

    def __init__(self, warnings: _Warnings, abandoned: threading.Event) -> None:
        self.name, self._warnings, self._abandoned = warnings.name, warnings, abandoned

    def once(self, kind: str, message: str) -> None:
        if not self._abandoned.is_set():
            self._warnings.once(kind, message)


def guarded_reward(fn: RewardFunc, name: str, timeout: float | None = DEFAULT_REWARD_TIMEOUT) -> RewardFunc:
    """Wrap ``fn`` so that it never raises or hangs and returns one finite float or None per completion.

    The call runs in a daemon worker thread, joined for at most ``timeout`` seconds (None: no limit, run in the
    calling thread).  Past it the batch scores None, a warning and ``rewards/<name>/timeouts`` are logged, and
    the thread is left to finish on its own (a daemon: it never holds up the exit); until it has, later calls of
    this reward score None at once (no pile-up of stuck threads).  ``KeyboardInterrupt`` raised by the reward
    still interrupts training.
    """
    warnings = _Warnings(name)
    stuck: list[threading.Thread] = []

    @functools.wraps(fn)
    def wrapper(completions: list, **kwargs: Any) -> list[float | None]:
        log_metric = kwargs.get("log_metric")
        if stuck and stuck[0].is_alive():
            warnings.once("stuck", "still stuck in an earlier call; its batches score None until it returns")
            return _timed_out(name, len(completions), log_metric)
        stuck.clear()
        finished, outcome = _call_bounded(fn, completions, kwargs, warnings, timeout)
        if not finished:
            logger.warning(
                "reward '%s' took over %s s (reward_timeout); this batch scores None (not fatal)",
                name,
                timeout,
            )
            stuck.append(outcome)
            return _timed_out(name, len(completions), log_metric)
        scores, failures = outcome
        if failures and callable(log_metric):
            log_metric(f"rewards/{name}/failures", float(failures))
        return scores

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    wrapper.reward_guarded = True  # guard_rewards leaves it as it is
    return wrapper


def _timed_out(name: str, count: int, log_metric: Any) -> list[None]:
    if callable(log_metric):
        log_metric(f"rewards/{name}/timeouts", 1.0)
    return [None] * count


def _call_bounded(fn: RewardFunc, completions: list, kwargs: dict, warnings: _Warnings, timeout: float | None):
    """(True, (scores, failures)) when the call finished, else (False, the stuck thread)."""
    if timeout is None:
        return True, _score_batch(fn, completions, kwargs, warnings)
    abandoned = threading.Event()
    finished, result = _run_in_worker(
        lambda: _score_batch(fn, completions, _detached(kwargs, abandoned), _CallWarnings(warnings, abandoned)),
        f"reward {warnings.name}",
        timeout,
    )
    if not finished:
        abandoned.set()  # not killed: an exception injected into user code could leave a lock (logging's) held
    return finished, result


def _run_in_worker(work: Callable[[], Any], name: str, timeout: float):
    """(True, ``work()``'s value) when it finished within ``timeout`` s in a daemon thread (what it raised is raised
    here), else (False, the still-running thread, left to finish on its own)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread, which decides
            box["error"] = err

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    _wait(worker, timeout)
    if worker.is_alive():
        return False, worker
    if "error" in box:
        raise box["error"]
    return True, box["value"]


def _wait(worker: threading.Thread, timeout: float) -> None:
    """Join ``worker`` for up to ``timeout`` s, in short slices so signals are handled; shorter after a stop."""
    end = time.monotonic() + timeout
    while worker.is_alive():
        if _stop_requested.is_set():
            end = min(end, time.monotonic() + STOP_GRACE_S)
        left = end - time.monotonic()
        if left <= 0:
            return
        worker.join(min(_POLL_S, left))


def _detached(kwargs: dict[str, Any], abandoned: threading.Event) -> dict[str, Any]:
    """TRL's ``log_extra`` / ``log_metric`` for a worker: ignored once the call is abandoned (keeps tables aligned)."""

    def guard(log: Callable) -> Callable:
        def call(*args: Any, **kw: Any) -> Any:
            return None if abandoned.is_set() else log(*args, **kw)

        return call

    return {k: guard(v) if k in ("log_extra", "log_metric") and callable(v) else v for k, v in kwargs.items()}


def _score_batch(fn: RewardFunc, completions: list, kwargs: dict, warnings: _Warnings) -> tuple[list, int]:
    """The batch's scores and the number of failures; a batch that raises is retried row by row."""
    try:
        raw = _call(fn, completions, kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - a reward may raise anything (SystemExit too); isolate the rows
        _warn_raised(warnings, err)
        raw = _score_rows(fn, completions, kwargs, warnings)
    return _clean_scores(raw, len(completions), warnings)


def _call(fn: RewardFunc, completions: list, kwargs: dict) -> list | None:
    # by keyword, as TRL calls it: ``def f(prompts, completions, **kwargs)`` got completions as its prompts and
    # failed on every call, scoring 0.0 (fault hunt)
    result = fn(completions=completions, **kwargs)
    if inspect.iscoroutine(result):  # an ``async def`` reward
        result = asyncio.run(result)
    return None if result is None else list(result)


_RAISED = object()  # the score of a row whose call raised (already warned about)


def _score_rows(fn: RewardFunc, completions: list, kwargs: dict, warnings: _Warnings) -> list:
    scores: list = []
    for i, completion in enumerate(completions):
        row_kwargs = {
            k: ([v[i]] if isinstance(v, list) and len(v) == len(completions) else v) for k, v in kwargs.items()
        }
        try:
            scores.append(_call(fn, [completion], row_kwargs)[0])
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001 - one failing row must not fail the others
            _warn_raised(warnings, err)
            scores.append(_RAISED)
    return scores


def _warn_raised(warnings: _Warnings, err: BaseException) -> None:
    reason = f"{type(err).__name__}: {err}"
    warnings.once(reason, f"failed ({reason}); those completions score 0.0 (not fatal)")


def _clean_scores(raw: list | None, count: int, warnings: _Warnings) -> tuple[list[float | None], int]:
    """One finite float or None per completion; NaN, inf (in float32), non-numbers and a wrong count become 0.0
    failures."""
    if raw is None:
        warnings.once("no list", "returned None, not a list of scores (a missing return?); the batch scores 0.0")
        return [0.0] * count, count
    if len(raw) != count:
        warnings.once("count", f"returned {len(raw)} scores for {count} completions; the batch scores 0.0")
        return [0.0] * count, count
    clean: list[float | None] = []
    failures = 0
    for value in raw:
        number = None if value is None or value is _RAISED else _as_finite_float(value)
        if number is None and value is not None:
            failures += 1
            number = 0.0
            if value is not _RAISED:
                warnings.once(
                    "values", "returned NaN, inf (beyond float32, TRL's reward type) or a non-number; those score 0.0"
                )
        clean.append(number)
    if None in clean:
        warnings.once("none", "returned None for some completions; TRL leaves those out of the weighted sum")
    return clean, failures


FLOAT32_MAX = 3.4028234663852886e38  # TRL keeps rewards in float32: a larger score is inf there, and so the mean


def _as_finite_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float (10**400)
        return None
    return number if math.isfinite(number) and abs(number) <= FLOAT32_MAX else None


# --------------------------------------------------------------------------------------------------
# Reward config and the public builder


def load_reward_config(reward_config: str | Path | dict | None) -> dict[str, dict[str, Any]]:
    """Read (path) or take (dict) a reward config and validate it against ``REWARD_CONFIG_SCHEMA``."""
    if reward_config is None:
        return {}
    if isinstance(reward_config, (str, Path)):
        data, source = read_json_object(reward_config, "reward config"), f"reward config {reward_config}"
    else:
        data, source = reward_config, "reward config"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object with sections {', '.join(REWARD_CONFIG_SCHEMA)}.")
    for section, values in data.items():
        if section not in REWARD_CONFIG_SCHEMA:
            raise ConfigError(f"{source}: unknown section {section!r}; valid: {', '.join(REWARD_CONFIG_SCHEMA)}.")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be an object, got {type(values).__name__}.")
        schema = REWARD_CONFIG_SCHEMA[section]
        for key, value in values.items():
            if key not in schema:
                raise ConfigError(f"{source}: unknown key {section}.{key}; valid: {', '.join(schema)}.")
            if isinstance(value, bool) or not isinstance(value, schema[key]):
                expected = " or ".join(t.__name__ for t in schema[key])
                raise ConfigError(f"{source}: {section}.{key} must be {expected}, got {type(value).__name__}.")
            _check_setting_value(f"{source}: {section}.{key}", value)
    return data


def _check_setting_value(where: str, value: Any) -> None:
    """A number in a reward config is finite (a NaN weight zeroed every reward and the run learned nothing), a
    list holds strings (keywords of numbers crashed the first scoring): fault hunt."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} is {value}; give a finite number.")
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        raise ConfigError(f'{where} must be a list of strings, e.g. ["correct", "yes"].')


def reward_weight(name: str, section: dict[str, Any], preset: str) -> float:
    if "weight" in section and "length_weight" in section:
        raise ConfigError(f"{name}: give either weight or length_weight, not both.")
    for key in ("weight", "length_weight"):
        if key in section:
            return float(section[key])
    return REWARD_WEIGHT_PRESETS[preset].get(name, 1.0)


def _factory_kwargs(name: str, section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in ("weight", "length_weight")}


def _check_timeout(reward_timeout: Any) -> None:
    """None (no limit) or a positive number of seconds (True counted as 1 s; a string failed at the first call)."""
    number = isinstance(reward_timeout, (int, float)) and not isinstance(reward_timeout, bool)
    if reward_timeout is not None and not (number and reward_timeout > 0):
        raise ConfigError(f"reward_timeout={reward_timeout!r} must be a positive number of seconds (e.g. 60).")


def build_reward_functions(
    names: Iterable[str],
    reward_config: str | Path | dict | None = None,
    preset: str = "balanced",
    reward_timeout: float | None = DEFAULT_REWARD_TIMEOUT,
) -> tuple[list[RewardFunc], list[float]]:
    """Guarded reward callables for ``names`` and their weights (for TRL's ``reward_weights``).

    ``names`` items are built-in names (``accuracy``, ``length``, ``custom``) or dotted paths to a function
    (``package.module.function``, as TRL's own CLI accepts).  ``reward_timeout``: seconds one call may take
    (None: no limit); see ``guarded_reward``.
    """
    _check_timeout(reward_timeout)
    if isinstance(names, str) or not isinstance(names, Iterable):  # "length" was read letter by letter
        raise ConfigError(f"reward functions must be a list of names, got {type(names).__name__}: e.g. ['accuracy'].")
    if preset not in REWARD_WEIGHT_PRESETS:
        raise ConfigError(f"reward weight preset {preset!r}: choose one of {', '.join(REWARD_WEIGHT_PRESETS)}.")
    _stop_requested.clear()  # a new run's rewards: no stop requested yet
    settings = load_reward_config(reward_config)
    functions, weights = [], []
    for name in names:
        if not isinstance(name, str):  # a function here was a TypeError ("in" on a function)
            raise ConfigError(
                f"reward function {name!r}: give a name ({', '.join(REWARD_NAMES)}) or a package.module.function "
                "path (functions go to GRPOTrainer(config, reward_functions=[...]))."
            )
        if name in REWARD_FACTORIES:
            section = settings.get(name, {})
            fn = REWARD_FACTORIES[name](**_factory_kwargs(name, section))
            functions.append(guarded_reward(fn, f"{name}_reward", reward_timeout))
            weights.append(reward_weight(name, section, preset))
        elif "." in name or ":" in name:
            fn = load_function(name)
            functions.append(guarded_reward(fn, getattr(fn, "__name__", name), reward_timeout))
            weights.append(1.0)
        else:
            raise ConfigError(
                f"reward function {name!r}: choose from {', '.join(REWARD_NAMES)} or give package.module.function."
            )
    return functions, weights


def guard_rewards(
    items: Iterable[Any],
    reward_config: str | Path | dict | None = None,
    preset: str = "balanced",
    reward_timeout: float | None = DEFAULT_REWARD_TIMEOUT,
) -> list[RewardFunc]:
    """Rewards given in Python (``GRPOTrainer(config, reward_functions=[...])``: functions, reward names or dotted
    paths) guarded like the config's, each under its own name.  A function of the caller's went to TRL as it was:
    one that raised stopped training, one that hung stalled it past ``reward_timeout``, and two lambdas shared a
    name (one overwrote the other's scores in ``evaluate``)."""
    _check_timeout(reward_timeout)
    if isinstance(items, str) or not isinstance(items, Iterable):
        raise ConfigError(f"reward_functions must be a list, got {type(items).__name__}; e.g. [my_reward, 'length'].")
    functions: list[RewardFunc] = []
    taken: set[str] = set()
    for index, item in enumerate(items):
        if isinstance(item, str):
            built = build_reward_functions([item], reward_config, preset, reward_timeout)[0]
        elif getattr(item, "reward_guarded", False):
            built = [item]
        elif callable(item):
            name = _unique(_callable_name(item, index), taken)
            _check_reward_signature(name, item)
            built = [guarded_reward(item, name, reward_timeout)]
        else:
            raise ConfigError(
                f"reward_functions[{index}] is {type(item).__name__}: give a function (completions, **kwargs) -> one "
                f"float or None per completion, or a reward name ({', '.join(REWARD_NAMES)}, package.module.function)."
            )
        twice = [fn.__name__ for fn in built if fn.__name__ in taken]
        if twice:  # one name: TRL's metrics and evaluate's scores kept only one of the two (fault hunt)
            raise ConfigError(
                f"reward_functions[{index}] is {twice[0]} again; give each reward once (a function of yours named "
                "like a built-in reward needs another name)."
            )
        taken.update(fn.__name__ for fn in built)
        functions.extend(built)
    return functions


def _callable_name(fn: Callable, index: int) -> str:
    """A metric-friendly name: the function's, a partial's function's, or reward_<index> for a lambda."""
    name = getattr(getattr(fn, "func", fn), "__name__", "")
    return name if name and name != "<lambda>" else f"reward_{index}"


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    return candidate


def score_completions(
    functions: list[RewardFunc], completions: list, columns: dict[str, list]
) -> dict[str, list[float | None]]:
    """Score ``completions`` with each function, passing dataset ``columns`` as TRL would."""
    return {fn.__name__: fn(completions=completions, **columns) for fn in functions}


def weighted_total(scores: dict[str, list[float | None]], weights: list[float]) -> list[float | None]:
    """Per completion, the weighted sum of the scores that are not None, as TRL sums them (None: none scored)."""
    totals: list[float | None] = []
    for row in zip(*scores.values()):
        present = [w * s for w, s in zip(weights, row) if s is not None]
        totals.append(sum(present) if present else None)
    return totals


PREVIEW_ROWS = 2000


def preview_rewards(dataset, functions: list[RewardFunc], limit: int = PREVIEW_ROWS) -> dict[str, dict[str, float]]:
    """Score the dataset's own ``chosen`` and ``rejected`` answers with each reward, and log a table.

    Shows before any GPU time is spent whether a reward agrees with the preference labels: the mean for
    chosen and for rejected, and how often chosen scores strictly higher, over the rows where both have a
    score (``scored``; a None score is not applicable).  No model is involved.
    """
    rows = list(itertools.islice(iter(dataset), limit))
    columns = {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
    chosen = scores_for(functions, columns, CHOSEN_KEY)
    rejected = scores_for(functions, columns, REJECTED_KEY)
    table = {name: _preview_stats(chosen[name], rejected[name]) for name in chosen}
    logger.info("reward preview on %d rows (chosen vs rejected references):", len(rows))
    logger.info(
        "%-20s %12s %14s %12s %8s %7s", "reward", "chosen mean", "rejected mean", "chosen wins", "ties", "scored"
    )
    for name, stats in table.items():
        logger.info(
            "%-20s %12.3f %14.3f %11.1f%% %7.1f%% %7d",
            name,
            stats["chosen_mean"],
            stats["rejected_mean"],
            100 * stats["chosen_wins"],
            100 * stats["ties"],
            stats["scored"],
        )
    return table


def _preview_stats(chosen: list[float | None], rejected: list[float | None]) -> dict[str, float]:
    pairs = [(c, r) for c, r in zip(chosen, rejected) if c is not None and r is not None]
    n = len(pairs) or math.nan
    return {
        "chosen_mean": sum(c for c, _ in pairs) / n,
        "rejected_mean": sum(r for _, r in pairs) / n,
        "chosen_wins": sum(c > r for c, r in pairs) / n,
        "ties": sum(c == r for c, r in pairs) / n,
        "scored": len(pairs),
    }


def scores_for(functions: list[RewardFunc], columns: dict[str, list], answer_key: str) -> dict[str, list[float | None]]:
    completions = [[{"role": "assistant", "content": text}] for text in columns.get(answer_key, [])]
    return score_completions(functions, completions, columns)
