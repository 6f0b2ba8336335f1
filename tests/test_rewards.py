"""Rewards, table-driven: one row per case, each with its reason."""

from __future__ import annotations

import json
import math

import pytest

from config import ConfigError
from rewards import (
    answers_match,
    build_reward_functions,
    extract_final_answer,
    get_accuracy_reward,
    get_custom_reward,
    get_length_reward,
    guarded_reward,
    parse_number,
    preview_rewards,
)

ACCURACY_CASES = [
    # completion, chosen, rejected, expected score
    ("The answer is 42.", "42", "", 1.0),  # "the answer is" marker
    ("so we get \\boxed{\\frac{1}{2}} hmm \\boxed{18}", "18", "", 1.0),  # last boxed wins
    ("Step 1 ... #### 1,000", "He pays 1000 dollars.\n#### 1000", "", 1.0),  # GSM8K marker, comma
    ("It costs $18.", "18", "", 1.0),  # currency and trailing period
    ("1000.0", "1,000", "", 1.0),  # decimal form
    ("It is 3/4 of the cake", "0.75", "", 1.0),  # fraction against decimal
    ("The result is −5", "-5", "", 1.0),  # unicode minus
    ("13 + 14 = 25", "27", "26", 0.0),  # last number is wrong
    ("I have no idea", "27", "", 0.0),  # no number at all
    ("정답은 27입니다", "27", "", 1.0),  # Korean answer marker
    ("The capital of France is Paris.", "The capital of France is Paris.", "I don't know.", 1.0),  # free text
    ("I don't know.", "The capital of France is Paris.", "I don't know.", -1.0),  # matches rejected
    ("네, 정확합니다", "", "", 1.0),  # no reference: the seed's keyword "정확"
    ("That is correct!", "", "", 1.0),  # no reference: keyword "correct"
    ("Paris", "", "", 0.0),  # no reference and no keyword
]


@pytest.mark.parametrize(("completion", "chosen", "rejected", "expected"), ACCURACY_CASES)
def test_accuracy(completion, chosen, rejected, expected):
    reward = get_accuracy_reward()
    assert reward([completion], chosen=[chosen], rejected=[rejected]) == [pytest.approx(expected)]


def test_accuracy_free_text_is_graded():
    reward = get_accuracy_reward()
    partial = reward(["Paris is big"], chosen=["The capital of France is Paris."], rejected=[""])[0]
    assert 0 < partial < 1


def test_accuracy_accepts_message_list_completions():
    reward = get_accuracy_reward()
    completion = [{"role": "assistant", "content": "#### 7"}]
    assert reward([completion], chosen=["7"], rejected=[""]) == [1.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,000", 1000), ("1000.0", 1000), ("$18", 18), ("18.", 18), ("-3/4", -0.75), ("−2", -2), ("abc", None)],
)
def test_parse_number(text, expected):
    value = parse_number(text)
    assert (value is None) if expected is None else math.isclose(value, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("x \\boxed{a{b}c} y", "a{b}c"), ("#### 72", "72"), ("The final answer is 9 apples", "9"), ("1 2 3", "3")],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_text_answers_compare_normalised():
    assert answers_match("Paris.", "paris")
    assert not answers_match("Lyon", "Paris")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (150, 1.0),  # at the optimum
        (75, pytest.approx(math.exp(-0.5), rel=0.02)),  # half the optimum
        (300, pytest.approx(math.exp(-0.5), rel=0.02)),  # double the optimum
        (0, pytest.approx(0.0, abs=1e-3)),  # empty
    ],
)
def test_length_reward_in_words(words, expected):
    assert get_length_reward(150)([" ".join(["w"] * words)])[0] == expected


def test_length_reward_is_monotone_towards_the_optimum():
    reward = get_length_reward(20, unit="characters")
    scores = reward(["x" * n for n in (0, 5, 10, 20)])
    assert scores == sorted(scores) and scores[-1] == 1.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0.8, 0.8 * 2.0), (-1.0, -0.5), (-0.5, -0.25), (0.0, 0.0)],  # reward_scale 2.0, penalty_scale -0.5
)
def test_custom_scaling(tmp_path, raw, expected):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(f"def score(completions, **kwargs):\n    return [{raw}] * len(completions)\n")
    reward = get_custom_reward(f"{plugin}:score", reward_scale=2.0, penalty_scale=-0.5)
    assert reward(["anything"]) == [pytest.approx(expected)]


def test_builtin_custom_penalises_repetition():
    reward = get_custom_reward()
    fine, repetitive, empty = reward(["A clear and short answer.", "yes yes yes yes yes yes yes", ""])
    assert fine == 1.0 and repetitive < 0 and empty == -0.5


def test_dotted_path_reward_function():
    functions, weights = build_reward_functions(["rewards.default_custom_reward"])
    assert functions[0].__name__ == "default_custom_reward" and weights == [1.0]


def test_weights_from_seed_reward_config():
    functions, weights = build_reward_functions(["accuracy", "length", "custom"], "config/reward_config.json")
    assert [f.__name__ for f in functions] == ["accuracy_reward", "length_reward", "custom_reward"]
    assert weights == [1.0, 0.1, 1.0]  # balanced preset, with the seed's length_weight


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"accuracy": {"keywords": []}}, "unknown key accuracy.keywords"),
        ({"lenght": {}}, "unknown section 'lenght'"),
        ({"length": {"optimal_length": "150"}}, "length.optimal_length must be int or float"),
        ({"custom": {"function": "no_such_module.fn"}}, "cannot import module"),
        ({"length": {"unit": "tokens"}}, "choose one of words, characters"),
    ],
)
def test_reward_config_validation(config, message):
    with pytest.raises(ConfigError) as err:
        build_reward_functions(["accuracy", "length", "custom"], config)
    assert message in str(err.value)


def test_raising_reward_scores_zero_and_counts(caplog):
    def flaky_reward(completions, **kwargs):
        if any("boom" in c for c in completions):
            raise RuntimeError("cannot score boom")
        return [1.0] * len(completions)

    metrics = []
    guarded = guarded_reward(flaky_reward, "flaky")
    scores = guarded(["ok", "boom", "ok"], log_metric=lambda name, value: metrics.append((name, value)))
    assert scores == [1.0, 0.0, 1.0]  # only the completion that raises scores 0
    assert metrics == [("rewards/flaky/failures", 1.0)]
    assert "cannot score boom" in caplog.text


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ([float("nan"), 1.0], [0.0, 1.0]),  # NaN
        ([float("inf"), None], [0.0, 0.0]),  # inf and None
        ([1.0], [0.0, 0.0]),  # wrong count
        (["x", 2], [0.0, 2.0]),  # not a number
    ],
)
def test_bad_reward_outputs(output, expected):
    guarded = guarded_reward(lambda completions, **kwargs: output, "bad")
    assert guarded(["a", "b"]) == expected


def test_reward_preview_table():
    from datasets import Dataset

    rows = [
        {"prompt": [{"role": "user", "content": "q"}], "chosen": "A fine answer here.", "rejected": "no no no no no"},
        {"prompt": [{"role": "user", "content": "q"}], "chosen": "42", "rejected": "41"},
    ]
    functions, _ = build_reward_functions(["accuracy", "custom"])
    table = preview_rewards(Dataset.from_list(rows), functions)
    assert table["accuracy_reward"]["chosen_wins"] == 1.0
    assert table["custom_reward"]["chosen_mean"] > table["custom_reward"]["rejected_mean"]
    json.dumps(table)
