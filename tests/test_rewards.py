"""Rewards, table-driven: one row per case, each with its reason."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config import ConfigError
from math_answers import FREE_TEXT, KEYWORDS, MATH, TEXT_ANSWER, UNPARSEABLE, parse_reference
from rewards import (
    accuracy_modes,
    build_reward_functions,
    get_accuracy_reward,
    get_custom_reward,
    get_length_reward,
    guard_rewards,
    guarded_reward,
    load_function,
    preview_rewards,
    weighted_total,
)

DATA = Path(__file__).parent / "data"

ACCURACY_CASES = [
    # completion, chosen, rejected, expected score
    ("The answer is 42.", "42", "", 1.0),  # "the answer is" marker
    ("first \\boxed{5}, no: the result is \\boxed{18}", "18", "", 0.0),  # several boxed answers form a set
    ("\\boxed{1} and \\boxed{-2}", "$-2, 1$", "", 1.0),  # ... which matches a reference with both
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
    ("\\boxed{\\frac{1}{2}}", "0.5", "", 1.0),  # LaTeX fraction against a decimal (scored 0 before math-verify)
    ("\\boxed{2\\sqrt{2}}", "2", "", 0.0),  # 2*sqrt(2) is not 2 (scored 1 before math-verify)
    ("so x = $x^2+1$", "The answer is $x^2 + 1$.", "", 1.0),  # expressions compare symbolically
    ("The answer is {1, 2}", "\\boxed{\\{2, 1\\}}", "", 1.0),  # sets ignore order
    ("The answer is Paris.", "The answer is paris", "", 1.0),  # a marked text answer, normalised
    ("The answer is Lyon.", "The answer is Paris", "", 0.0),
    ("답: 3/4", "정답은 0.75", "", 1.0),  # Korean markers on both sides
    # chat models go on after the answer: the marked answer ends with its clause (third fault hunt: the first two
    # were scored 1 and 0, the next three 0)
    ("The answer is 16 dollars, which is 2 less than 18.", "#### 18", "", 0.0),
    ("The answer is 18 dollars, which is 2 more than 16.", "#### 18", "", 1.0),
    ("The answer is 42 (since 6 x 7 = 42 and not 41).", "42", "", 1.0),
    ("The answer is 7. I hope it helps! Rated 5/5", "7", "", 1.0),
    ("So the answer is **42**.", "42", "", 1.0),  # markdown bold
    ("The answer is 3.5.", "7/2", "", 1.0),  # a decimal point is not a sentence end
    ("The answer is Paris.", "Paris", "", 1.0),  # a free-text reference against the marked answer (was 0.4)
    ("It is incorrect", "", "", 0.0),  # keywords are words: not "correct" inside "incorrect"
    ("Yesterday it rained", "", "", 0.0),  # ... nor "yes" inside "yesterday"
    ("x = 5, y = 3", "x = 5, y = 3", "", 1.0),  # a bare answer is parsed whole, as its reference (was read as 3)
    ("x = 5, y = 4", "x = 5, y = 3", "", 0.0),
    # an unmarked answer is the closing words of the last sentence (was compared whole: the first scored 0)
    ("The capital is Paris.", "The answer is Paris", "", 1.0),
    ("Paris", "The answer is Paris", "", 1.0),
    ("It's not Paris, it's Lyon.", "The answer is Paris", "", 0.0),
    ("It is not Paris.", "The answer is Paris", "", 0.0),
    ("The answer isn't Paris", "The answer is Paris", "", 0.0),
    ("Paris is the capital.", "The answer is Paris", "", 0.0),  # the answer where the sentence begins is not read
    ("I'd say New York City. Hope this helps", "The answer is New York City", "", 0.0),  # the last sentence only
    ("I'd say New York City!", "The answer is New York City", "", 1.0),
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


def test_custom_function_returning_none_is_left_out_not_a_failure(tmp_path, caplog):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("def score(completions, **kwargs):\n    return [None, 0.5][: len(completions)]\n")
    functions, _ = build_reward_functions(["custom"], {"custom": {"function": f"{plugin}:score"}})
    assert functions[0](["a", "b"]) == [None, 0.5] and "failed" not in caplog.text


def test_a_reward_taking_prompts_before_completions_is_called_as_trl_calls_it(tmp_path):
    """def f(prompts, completions, **kwargs), the tutorials' shape, got the completions as its prompts and failed on
    every call, training on zero rewards (fault hunt): rewards are called by keyword, as TRL calls them."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "def first(prompts, completions, answer, **kwargs):\n"
        "    return [float(c == a) for c, a in zip(completions, answer)]\n"
    )
    functions, _ = build_reward_functions([f"{plugin}:first"])
    assert functions[0](prompts=["p", "q"], completions=["4", "5"], answer=["4", "4"]) == [1.0, 0.0]


def test_builtin_custom_penalises_repetition():
    reward = get_custom_reward()
    fine, repetitive, empty = reward(["A clear and short answer.", "yes yes yes yes yes yes yes", ""])
    assert fine == 1.0 and repetitive < 0 and empty == -0.5


def test_a_function_missing_from_our_own_module_says_that_it_shadows_the_users():
    """A user's rewards.py beside train_grpo.py: ``rewards.my_fn`` imported ours (fourth fault hunt)."""
    with pytest.raises(ConfigError, match=r"rewards is this package's own module .*path/to/rewards.py:function"):
        build_reward_functions(["rewards.my_fn"])


def test_a_reward_module_that_hangs_when_imported_is_given_up(tmp_path, monkeypatch):
    """Nothing hangs forever: an import that waits (fourth fault hunt: it printed nothing until killed)."""
    import rewards

    monkeypatch.setattr(rewards, "IMPORT_TIMEOUT_S", 0.5)
    plugin = tmp_path / "waits.py"
    plugin.write_text("import threading\nthreading.Event().wait(30)\n\ndef score(completions, **kw):\n    return []\n")
    with pytest.raises(ConfigError, match=r"importing it did not finish in 0\.5 s"):
        load_function(f"{plugin}:score")


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
        ({"custom": {"function": "no_such_module.fn"}}, "importing no_such_module failed"),
        ({"length": {"unit": "tokens"}}, "choose one of words, characters"),
        ({"length": {"optimal_length": float("inf")}}, "length.optimal_length is inf; give a finite number"),
        ({"length": {"optimal_length": -5}}, "optimal_length=-5 must be a positive, finite number"),
        ({"length": {"weight": float("nan")}}, "length.weight is nan; give a finite number"),  # learned nothing
        ({"accuracy": {"correct_keywords": [1, 2]}}, "accuracy.correct_keywords must be a list of strings"),
    ],
)
def test_reward_config_validation(config, message):
    with pytest.raises(ConfigError) as err:
        build_reward_functions(["accuracy", "length", "custom"], config)
    assert message in str(err.value)


@pytest.mark.parametrize("optimal_length", ["150", True, 0])
def test_the_length_factory_in_python_checks_its_number(optimal_length):
    """get_length_reward("150") raised a TypeError, True counted as 1 (third fault hunt)."""
    with pytest.raises(ConfigError, match="must be a positive, finite number"):
        get_length_reward(optimal_length=optimal_length)


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
        ([float("inf"), None], [0.0, None]),  # inf fails; None is kept (TRL leaves it out of the sum)
        ([1e300, -1e39], [0.0, 0.0]),  # inf in TRL's float32 reward tensor (the logged mean was inf)
        ([3e38, -1e-300], [3e38, -1e-300]),  # within float32
        ([1.0], [0.0, 0.0]),  # wrong count
        (["x", 2], [0.0, 2.0]),  # not a number
        (None, [0.0, 0.0]),  # no list at all (a missing return)
        ([10**400, 1], [0.0, 1.0]),  # an int beyond float: OverflowError stopped training (fault hunt)
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


# --------------------------------------------------------------------------------------------------
# Accuracy on real cases (tests/data/math_README.md)


def load_cases(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


# (file, cases, agreeing cases measured with this reward; the parser before math-verify agreed on 76 and 240)
REAL_CASES = [("math_verify_cases.jsonl", 268, 261), ("math_gsm8k_cases.jsonl", 240, 240)]


@pytest.mark.parametrize(("name", "count", "agreeing"), REAL_CASES)
def test_accuracy_agrees_with_real_verdicts(name, count, agreeing):
    cases = load_cases(name)
    reward = get_accuracy_reward()
    scores = reward([c["pred"] for c in cases], chosen=[c["gold"] for c in cases], rejected=[""] * len(cases))
    agree = sum(score == case["expected"] for score, case in zip(scores, cases))
    assert (len(cases), agree) == (count, agreeing)


def test_gsm8k_references_score_themselves_and_not_a_changed_answer():
    references = sorted({c["gold"] for c in load_cases("math_gsm8k_cases.jsonl")})
    changed = [
        ref.rpartition("####")[0] + f"#### {int(ref.rpartition('####')[2].replace(',', '')) + 1}" for ref in references
    ]
    reward = get_accuracy_reward()
    assert reward(references, chosen=references, rejected=[""] * len(references)) == [1.0] * len(references)
    assert reward(changed, chosen=references, rejected=[""] * len(references)) == [0.0] * len(references)


@pytest.mark.parametrize(
    ("reference", "mode"),
    [
        ("He has 3 + 4 = 7 apples.\n#### 7", MATH),
        ("\\boxed{2\\sqrt{2}}", MATH),
        ("x^2+1", MATH),  # a bare expression
        ("$(11,7)or(7,11)$", MATH),  # one delimited formula
        ("정답은 서울", TEXT_ANSWER),
        ("The capital of France is Paris.", FREE_TEXT),
        ("$125$ miles", FREE_TEXT),  # a formula followed by words is a sentence
        ("$1$ and $2$ and $3$", MATH),  # several formulas: a list of answers (a NuminaMath reference)
        ("\\(\\frac{3}{4}\\).", MATH),
        ("", KEYWORDS),
        ("\\boxed{}", UNPARSEABLE),
    ],
)
def test_reference_modes(reference, mode):
    assert parse_reference(reference).mode == mode


def test_unparseable_reference_scores_none_not_zero():
    assert get_accuracy_reward()(["\\boxed{3}"], chosen=["\\boxed{}"], rejected=[""]) == [None]


def test_accuracy_modes_counts_and_logs(caplog):
    rows = [{"chosen": c} for c in ("#### 7", "42", "The sky is blue.", "", "\\boxed{}")]
    caplog.set_level("INFO")
    counts = accuracy_modes(rows)
    assert counts == {MATH: 2, TEXT_ANSWER: 0, UNPARSEABLE: 1, FREE_TEXT: 1, KEYWORDS: 1}
    assert "accuracy reward on 5 rows" in caplog.text and "1 references hold an answer math-verify" in caplog.text


@pytest.mark.parametrize(
    ("rows", "warned"), [([{"prompt": "p"}] * 3, True), ([{"chosen": "4"}, {"prompt": "p"}], False)]
)
def test_data_without_any_reference_is_warned_about(caplog, rows, warned):
    """A reference column the loader did not recognise left accuracy grading keywords, said only at INFO (hunt)."""
    accuracy_modes(rows)
    assert ("no row has a reference answer" in caplog.text) is warned


def test_math_verify_is_bounded_in_a_worker_thread(monkeypatch):
    """A parse that never ends is stopped by the thread deadline (math-verify's own alarm needs the main thread)."""
    import math_answers

    def endless(*args, **kwargs):
        while True:
            pass

    monkeypatch.setattr(math_answers, "MATH_TIMEOUT_S", 0.3)
    monkeypatch.setattr(math_answers, "parse", endless)
    result = {}
    worker = threading.Thread(target=lambda: result.update(ok=math_answers.parse_span("x^2")))
    started = time.monotonic()
    worker.start()
    worker.join(10)
    assert result == {"ok": []} and time.monotonic() - started < 5


# --------------------------------------------------------------------------------------------------
# Reliability: timeouts, exits, None, imports


def test_reward_past_timeout_scores_none_and_training_goes_on(caplog):
    release = threading.Event()

    def slow_reward(completions, **kwargs):
        release.wait(30)
        return [1.0] * len(completions)

    metrics = []
    guarded = guarded_reward(slow_reward, "slow", timeout=0.3)
    log = lambda name, value: metrics.append((name, value))  # noqa: E731
    started = time.monotonic()
    assert guarded(["a", "b"], log_metric=log) == [None, None]
    assert guarded(["c"], log_metric=log) == [None]  # still stuck: None at once, no second thread
    assert time.monotonic() - started < 3
    assert metrics == [("rewards/slow/timeouts", 1.0)] * 2
    assert "took over 0.3 s (reward_timeout)" in caplog.text
    release.set()
    time.sleep(0.2)
    assert guarded(["d"]) == [1.0]  # once the stuck call returned, the reward scores again


def test_log_extra_of_an_abandoned_call_is_dropped():
    """A late ``log_extra`` would misalign TRL's completions table."""
    logged, release = [], threading.Event()

    def late_logger(completions, log_extra, **kwargs):
        release.wait(30)
        log_extra("late", ["x"] * len(completions))
        return [1.0] * len(completions)

    assert guarded_reward(late_logger, "late", timeout=0.2)(["a"], log_extra=lambda *a: logged.append(a)) == [None]
    release.set()
    time.sleep(0.2)
    assert logged == []


def test_an_abandoned_call_warns_nothing_when_it_finishes(caplog):
    """It may finish after the run's log handlers are closed: logging printed a traceback to the terminal."""
    release = threading.Event()

    def late_and_wrong(completions, **kwargs):
        release.wait(30)
        return [1.0] * (len(completions) + 1)  # a wrong count: warned about, were the call still awaited

    assert guarded_reward(late_and_wrong, "late", timeout=0.2)(["a"]) == [None]
    caplog.clear()
    release.set()
    time.sleep(0.3)
    assert "returned 2 scores" not in caplog.text


@pytest.mark.parametrize("error", [SystemExit(3), GeneratorExit(), ValueError("bad")])
def test_reward_raising_any_base_exception_is_a_failure(error, caplog):
    def raising(completions, **kwargs):
        raise error

    metrics = []
    scores = guarded_reward(raising, "raising")(["a", "b"], log_metric=lambda n, v: metrics.append((n, v)))
    assert scores == [0.0, 0.0]
    assert metrics == [("rewards/raising/failures", 2.0)]
    assert type(error).__name__ in caplog.text


def test_keyboard_interrupt_from_a_reward_still_interrupts():
    def interrupted(completions, **kwargs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guarded_reward(interrupted, "interrupted")(["a"])


def test_none_scores_are_kept_and_warned_once(caplog):
    guarded = guarded_reward(lambda completions, **kwargs: [None, 1.0], "sparse")
    assert guarded(["a", "b"]) == [None, 1.0]
    assert guarded(["a", "b"]) == [None, 1.0]
    assert caplog.text.count("returned None for some completions") == 1


def test_async_reward_is_awaited():
    async def async_reward(completions, **kwargs):
        return [0.5] * len(completions)

    assert guarded_reward(async_reward, "async")(["a"]) == [0.5]


def test_weighted_total_skips_none_like_trl():
    scores = {"a": [1.0, None, None], "b": [0.5, 2.0, None]}
    assert weighted_total(scores, [1.0, 0.5]) == [1.25, 1.0, None]


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: build_reward_functions(None), "must be a list of names, got NoneType"),
        (lambda: build_reward_functions("length"), "must be a list of names, got str"),
        (lambda: build_reward_functions([len]), "give a name"),
        (lambda: build_reward_functions(["length"], preset="nope"), "preset 'nope': choose one of"),
        (lambda: guard_rewards(None), "must be a list, got NoneType"),
        (lambda: guard_rewards([len], reward_timeout="x"), "reward_timeout='x'"),
    ],
)
def test_the_reward_builders_refuse_odd_arguments_in_one_error(call, words):
    """TypeError / KeyError from inside, or a string timeout failing at the first call (fourth hunt)."""
    with pytest.raises(ConfigError, match=re.escape(words)):
        call()


@pytest.mark.parametrize("timeout", [0, -1, "60", True])
def test_reward_timeout_must_be_positive(timeout):
    with pytest.raises(ConfigError, match="reward_timeout"):
        build_reward_functions(["length"], reward_timeout=timeout)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def score(completions, **kw)\n    return [1.0]\n", "syntax error in"),
        ("import no_such_package_xyz\n", "ModuleNotFoundError: No module named 'no_such_package_xyz'"),
        ("raise SystemExit(1)\n", "importing"),
        ("def other(completions, **kw):\n    return []\n", "has no function 'score' (it defines: other)"),
    ],
)
def test_reward_module_that_fails_to_import_is_one_config_error(tmp_path, source, message):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(source)
    with pytest.raises(ConfigError) as err:
        load_function(f"{plugin}:score")
    assert message in str(err.value) and str(plugin) in str(err.value)


def test_a_dotted_reward_module_beside_the_user_is_found(tmp_path, monkeypatch):
    """`python path/to/train_grpo.py --reward-function my_rewards.score` from the folder holding my_rewards.py: the
    working directory was not on the import path (found by a fault hunt: "No module named 'my_rewards'")."""
    (tmp_path / "my_rewards_beside.py").write_text(
        "def score(completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_function("my_rewards_beside.score")(["a", "b"]) == [1.0, 1.0]


STUCK_SCRIPT = """
import signal, sys, time
sys.path.insert(0, {root!r})
from rewards import cancel_pending_rewards, guarded_reward
signal.signal(signal.SIGTERM, lambda *a: cancel_pending_rewards())
stuck = guarded_reward(lambda completions, **kw: time.sleep(1000), "stuck", timeout=60)
print("scoring", flush=True)
started = time.monotonic()
print(stuck(["a"]), round(time.monotonic() - started), flush=True)
"""


def test_sigterm_during_a_stuck_reward_ends_within_seconds_and_process_exits():
    """The graceful stop calls cancel_pending_rewards; the stuck daemon thread does not hold the exit."""
    script = STUCK_SCRIPT.format(root=str(Path(__file__).parent.parent))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "scoring"
    time.sleep(0.5)
    started = time.monotonic()
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out.split()[0] == "[None]"
    assert time.monotonic() - started < 10


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_thread_deadline_fires_inside_its_block_and_never_after():
    """Blocks ending before or after their deadline, in two threads: an exception never lands outside its own
    block (``leaked``) nor in a later block before that block's deadline (``early``)."""
    from thread_deadline import DeadlineExceeded, deadline

    counts = {"fired": 0, "leaked": 0, "early": 0}

    def work():
        for i in range(60):
            try:
                started = time.monotonic()
                try:
                    with deadline(0.02):
                        spin(0.004 * (i % 10))
                except DeadlineExceeded:
                    counts["fired" if time.monotonic() - started >= 0.02 else "early"] += 1
                spin(0.002)  # a late exception would land here
            except DeadlineExceeded:
                counts["leaked"] += 1

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert counts["leaked"] == counts["early"] == 0 and counts["fired"] > 0


def _lambda_reward(value):
    return lambda completions, **kwargs: [value] * len(completions)


def test_rewards_given_in_python_are_guarded_like_the_configs():
    """GRPOTrainer(config, reward_functions=[...]) passed the caller's functions to TRL as they were: one that raised
    stopped training, one that hung ignored reward_timeout, two lambdas shared one name (the second fault hunt)."""
    from config import GRPOConfig
    from grpo_trainer import GRPOTrainer

    def boom(completions, **kwargs):
        raise ValueError("boom")

    def slow(completions, **kwargs):
        time.sleep(3)
        return [1.0] * len(completions)

    config = GRPOConfig(output_dir="out", reward_timeout=0.5)
    trainer = GRPOTrainer(config, reward_functions=[boom, slow, _lambda_reward(1.0), _lambda_reward(0.0), "length"])
    names = [fn.__name__ for fn in trainer.reward_functions]
    assert names == ["boom", "slow", "reward_2", "reward_3", "length_reward"]
    started = time.monotonic()
    scores = [fn(["a b"], chosen=["x"]) for fn in trainer.reward_functions]
    assert time.monotonic() - started < 2.5
    assert scores[:4] == [[0.0], [None], [1.0], [0.0]]
    assert trainer.reward_weights == [1.0] * 5  # TRL's default, not the config's weights of its own rewards


@pytest.mark.parametrize(
    ("reward", "words"),
    [
        (lambda completions: [1.0], "takes (completions)"),
        (42, "reward_functions[0] is int"),
        ("nonsense", "choose from"),
    ],
)
def test_python_rewards_that_could_never_score_are_refused(reward, words):
    from config import GRPOConfig
    from grpo_trainer import GRPOTrainer

    with pytest.raises(ConfigError, match=re.escape(words)):
        GRPOTrainer(GRPOConfig(output_dir="out"), reward_functions=[reward])


def test_a_huge_completion_is_scored_in_time():
    """math-verify's C-level work on 100k characters of numbers took 45 s past its 5 s deadline (third fault hunt):
    only the end, where the final answer is, is parsed."""
    reward = get_accuracy_reward()
    started = time.monotonic()
    assert reward(["1 " * 50000 + "The answer is 7."], chosen=["7"], rejected=[""]) == [1.0]
    assert reward(["1 " * 50000], chosen=["7"], rejected=[""]) == [0.0]
    assert time.monotonic() - started < 5
