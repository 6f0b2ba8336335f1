"""Reward functions with TRL's signature ``(completions, **kwargs) -> list[float]``.

Three built-ins, parameterised by ``get_*_reward`` factories and registered in ``REWARD_FACTORIES``:

* ``accuracy``: where the reference (the ``chosen`` column) has a checkable final answer, 1.0 when the
  completion's final answer equals it, else 0.0.  Where the reference is free text, the word-overlap F1 with
  ``chosen`` minus the F1 with ``rejected`` (range -1..1).  Where no reference exists, 1.0 when the
  completion contains one of ``correct_keywords`` (the seed's key), else 0.0.
* ``length``: ``exp(-0.5 * (ln((n+1)/(optimal_length+1)) / ln 2) ** 2)`` with ``n`` the completion length
  in words (or characters): 1.0 at the optimum, 0.61 at half or double it, smooth and bounded in 0..1.
* ``custom``: a user function (``"function": "file.py:fn"`` or ``"package.module:fn"``), or the built-in
  repetition check; positive scores are multiplied by ``reward_scale``, negative ones by
  ``|penalty_scale|`` with the sign of ``penalty_scale`` (so a raw -1 scores ``penalty_scale``).

Every callable is wrapped by ``guarded_reward``: a reward that raises or returns NaN/inf or the wrong count
scores 0.0 for the affected completions, logs one warning with the reason and counts the failures in the
run's metrics (``rewards/<name>/failures``).  Training never stops because of a reward.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import itertools
import logging
import math
import re
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

from config import REWARD_NAMES, REWARD_WEIGHT_PRESETS, ConfigError, read_json_object

logger = logging.getLogger(__name__)

CHOSEN_KEY = "chosen"
REJECTED_KEY = "rejected"
RewardFunc = Callable[..., list[float]]

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


_NUMBER = r"[-−]?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_BOXED_RE = re.compile(r"\\boxed\s*\{")
_HASH_RE = re.compile(r"####\s*(.+)")
_ANSWER_IS_RE = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|answer\s*[:=]|정답은|정답\s*[:=]|답은|답\s*[:=])\s*:?\s*([^\n]+)", re.IGNORECASE
)
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def _boxed_contents(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}``, with nested braces."""
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return None


def parse_number(text: str) -> Fraction | None:
    """'1,000', '1000.0', '$18', '18.', '-3/4', '−2' -> exact Fraction; None when not a number."""
    cleaned = text.strip().replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    cleaned = cleaned.rstrip(".%")
    if not cleaned:
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def _marked_answer(text: str) -> str | None:
    """The explicitly marked final answer: \\boxed{}, GSM8K's '#### 42', or 'the answer is ...'."""
    boxed = _boxed_contents(text)
    if boxed is not None:
        return boxed
    for pattern in (_HASH_RE, _ANSWER_IS_RE):
        found = pattern.findall(text)
        if found:
            return found[-1].strip()
    return None


def extract_final_answer(text: str) -> str | None:
    """Marked answer if any, else the last number in the text."""
    marked = _marked_answer(text)
    if marked is not None:
        number = _NUMBER_RE.search(marked)
        return number.group(0) if number and parse_number(marked) is None else marked
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def reference_answer(reference: str) -> str | None:
    """A checkable final answer of a reference: a marked answer, or a reference that is just a number."""
    marked = _marked_answer(reference)
    if marked is not None:
        return marked
    return reference if parse_number(reference) is not None else None


def _normalise_text_answer(text: str) -> str:
    return " ".join(_WORD_RE.findall(text.lower()))


def answers_match(predicted: str | None, expected: str) -> bool:
    if predicted is None:
        return False
    expected_number = parse_number(expected)
    if expected_number is not None:
        predicted_number = parse_number(predicted)
        if predicted_number is None:
            found = _NUMBER_RE.findall(predicted)
            predicted_number = parse_number(found[-1]) if found else None
        return predicted_number == expected_number
    return _normalise_text_answer(predicted) == _normalise_text_answer(expected)


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


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

    def accuracy_reward(completions: list, **kwargs: Any) -> list[float]:
        chosen = _column(kwargs, CHOSEN_KEY, len(completions))
        rejected = _column(kwargs, REJECTED_KEY, len(completions))
        return [
            score_accuracy(completion_text(c), ref, rej, keywords)
            for c, ref, rej in zip(completions, chosen, rejected, strict=True)
        ]

    return accuracy_reward


def score_accuracy(text: str, chosen: str, rejected: str, keywords: list[str]) -> float:
    if not chosen.strip():
        lowered = text.lower()
        return 1.0 if any(k in lowered for k in keywords) else 0.0
    expected = reference_answer(chosen)
    if expected is not None:
        return 1.0 if answers_match(extract_final_answer(text), expected) else 0.0
    score = token_f1(text, chosen)
    if rejected.strip():
        score -= token_f1(text, rejected)
    return score


def get_length_reward(optimal_length: float = 150, unit: str = "words") -> RewardFunc:
    if unit not in LENGTH_UNITS:
        raise ConfigError(f"length.unit={unit!r}; choose one of {', '.join(LENGTH_UNITS)}.")
    if optimal_length <= 0:
        raise ConfigError(f"length.optimal_length={optimal_length} must be positive.")
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

    def custom_reward(completions: list, **kwargs: Any) -> list[float]:
        raw = inner(completions, **kwargs)
        return [scale_signed(float(v), reward_scale, penalty_scale) for v in raw]

    return custom_reward


REWARD_FACTORIES: dict[str, Callable[..., RewardFunc]] = {
    "accuracy": get_accuracy_reward,
    "length": get_length_reward,
    "custom": get_custom_reward,
}


# --------------------------------------------------------------------------------------------------
# Loading user functions


def load_function(spec: str) -> RewardFunc:
    """``path/to/file.py:fn``, ``package.module:fn`` or ``package.module.fn`` -> the callable."""
    if ":" in spec:
        module_part, _, attr = spec.rpartition(":")
    else:
        module_part, _, attr = spec.rpartition(".")
    if not module_part or not attr:
        raise ConfigError(f"reward function {spec!r}: use 'path/to/file.py:function' or 'package.module.function'.")
    if module_part.endswith(".py"):
        path = Path(module_part)
        if not path.is_file():
            raise ConfigError(f"reward function {spec!r}: file {path} not found.")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as err:
            raise ConfigError(f"reward function {spec!r}: cannot import module {module_part!r} ({err}).") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"reward function {spec!r}: module {module_part!r} has no callable {attr!r}.")
    return fn


# --------------------------------------------------------------------------------------------------
# Safety wrapper


def guarded_reward(fn: RewardFunc, name: str) -> RewardFunc:
    """Wrap ``fn`` so that it never raises and always returns one finite float per completion."""
    warned: set[str] = set()

    def warn_once(reason: str) -> None:
        if reason not in warned:
            warned.add(reason)
            logger.warning("reward '%s' failed (%s); those completions score 0.0 and training goes on", name, reason)

    def score_one_by_one(completions: list, kwargs: dict[str, Any]) -> list[float]:
        scores = []
        for i, completion in enumerate(completions):
            row_kwargs = {
                k: ([v[i]] if isinstance(v, list) and len(v) == len(completions) else v) for k, v in kwargs.items()
            }
            try:
                scores.append(fn([completion], **row_kwargs)[0])
            except Exception as err:  # noqa: BLE001 - a user reward may raise anything; it must not stop training
                warn_once(f"{type(err).__name__}: {err}")
                scores.append(None)
        return scores

    @functools.wraps(fn)
    def wrapper(completions: list, **kwargs: Any) -> list[float]:
        try:
            scores = list(fn(completions, **kwargs))
        except Exception as err:  # noqa: BLE001 - isolate the completions that make it raise
            warn_once(f"{type(err).__name__}: {err}")
            scores = score_one_by_one(completions, kwargs)
        if len(scores) != len(completions):
            warn_once(f"returned {len(scores)} scores for {len(completions)} completions")
            scores = [None] * len(completions)
        clean, failures = [], 0
        for value in scores:
            number = _as_finite_float(value)
            if number is None:
                failures += 1
                number = 0.0
            clean.append(number)
        if failures:
            if any(v is not None for v in scores):
                warn_once("some scores were NaN, inf or not numbers")
            log_metric = kwargs.get("log_metric")
            if callable(log_metric):
                log_metric(f"rewards/{name}/failures", float(failures))
        return clean

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    return wrapper


def _as_finite_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
    return data


def reward_weight(name: str, section: dict[str, Any], preset: str) -> float:
    if "weight" in section and "length_weight" in section:
        raise ConfigError(f"{name}: give either weight or length_weight, not both.")
    for key in ("weight", "length_weight"):
        if key in section:
            return float(section[key])
    return REWARD_WEIGHT_PRESETS[preset].get(name, 1.0)


def _factory_kwargs(name: str, section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in ("weight", "length_weight")}


def build_reward_functions(
    names: Iterable[str], reward_config: str | Path | dict | None = None, preset: str = "balanced"
) -> tuple[list[RewardFunc], list[float]]:
    """Guarded reward callables for ``names`` and their weights (for TRL's ``reward_weights``).

    ``names`` items are built-in names (``accuracy``, ``length``, ``custom``) or dotted paths to a function
    (``package.module.function``, as TRL's own CLI accepts).
    """
    settings = load_reward_config(reward_config)
    functions, weights = [], []
    for name in names:
        if name in REWARD_FACTORIES:
            section = settings.get(name, {})
            fn = REWARD_FACTORIES[name](**_factory_kwargs(name, section))
            functions.append(guarded_reward(fn, f"{name}_reward"))
            weights.append(reward_weight(name, section, preset))
        elif "." in name or ":" in name:
            fn = load_function(name)
            functions.append(guarded_reward(fn, getattr(fn, "__name__", name)))
            weights.append(1.0)
        else:
            raise ConfigError(
                f"reward function {name!r}: choose from {', '.join(REWARD_NAMES)} or give package.module.function."
            )
    return functions, weights


def score_completions(
    functions: list[RewardFunc], completions: list, columns: dict[str, list]
) -> dict[str, list[float]]:
    """Score ``completions`` with each function, passing dataset ``columns`` as TRL would."""
    return {fn.__name__: fn(completions, **columns) for fn in functions}


PREVIEW_ROWS = 2000


def preview_rewards(dataset, functions: list[RewardFunc], limit: int = PREVIEW_ROWS) -> dict[str, dict[str, float]]:
    """Score the dataset's own ``chosen`` and ``rejected`` answers with each reward, and log a table.

    Shows before any GPU time is spent whether a reward agrees with the preference labels: the mean for
    chosen and for rejected, and how often chosen scores strictly higher.  No model is involved.
    """
    rows = list(itertools.islice(iter(dataset), limit))
    columns = {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
    chosen = scores_for(functions, columns, CHOSEN_KEY)
    rejected = scores_for(functions, columns, REJECTED_KEY)
    table = {}
    for name in chosen:
        pairs = list(zip(chosen[name], rejected[name]))
        table[name] = {
            "chosen_mean": sum(c for c, _ in pairs) / len(pairs),
            "rejected_mean": sum(r for _, r in pairs) / len(pairs),
            "chosen_wins": sum(c > r for c, r in pairs) / len(pairs),
            "ties": sum(c == r for c, r in pairs) / len(pairs),
        }
    logger.info("reward preview on %d rows (chosen vs rejected references):", len(rows))
    logger.info("%-20s %12s %14s %12s %8s", "reward", "chosen mean", "rejected mean", "chosen wins", "ties")
    for name, stats in table.items():
        logger.info(
            "%-20s %12.3f %14.3f %11.1f%% %7.1f%%",
            name,
            stats["chosen_mean"],
            stats["rejected_mean"],
            100 * stats["chosen_wins"],
            100 * stats["ties"],
        )
    return table


def scores_for(functions: list[RewardFunc], columns: dict[str, list], answer_key: str) -> dict[str, list[float]]:
    completions = [[{"role": "assistant", "content": text}] for text in columns.get(answer_key, [])]
    return score_completions(functions, completions, columns)
