"""Rebuild the math reward cases in this folder from local git mirrors of their public sources.

    python tests/data/math_make_cases.py MATH_VERIFY_GIT_DIR GRADE_SCHOOL_MATH_GIT_DIR

* ``math_verify_cases.jsonl``: the (gold, pred, expected) rows of the ``pytest.mark.parametrize`` tables in
  huggingface/Math-Verify's tests, read as data with ``ast`` (nothing of that code is kept or run).
* ``math_gsm8k_cases.jsonl``: model solutions with their correctness labels from openai/grade-school-math's
  ``example_model_solutions.jsonl`` (first ``GSM8K_QUESTIONS`` questions, four models each), with the reference
  being that question's answer in GSM8K's ``test.jsonl`` (ending in ``#### N``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
MATH_VERIFY_TESTS = (
    "tests/test_all.py",
    "tests/test_numina_cases.py",
    "tests/test_open_thoughts.py",
    "tests/test_yujianll.py",
    "tests/test_boxed.py",
    "tests/test_strict.py",
)
GSM8K_QUESTIONS = 60
GSM8K_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def show(git_dir: str, path: str) -> str:
    return subprocess.check_output(["git", "--git-dir", git_dir, "show", f"HEAD:{path}"], text=True)


def head(git_dir: str) -> str:
    return subprocess.check_output(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], text=True).strip()


def parametrize_rows(source: str):
    """(test function, its first body line, row dict) for each parametrize row naming gold and pred."""
    for fn in ast.parse(source).body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        body = ast.get_source_segment(source, fn.body[0])
        for dec in fn.decorator_list:
            if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                continue
            names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
            try:
                rows = ast.literal_eval(dec.args[1])
            except ValueError:  # a table built from expressions, not literals
                continue
            for row in rows:
                record = dict(zip(names, row))
                if "gold" in record and "pred" in record:
                    yield fn.name, body, record


def math_verify_cases(git_dir: str) -> list[dict]:
    cases = []
    for path in MATH_VERIFY_TESTS:
        for name, body, record in parametrize_rows(show(git_dir, path)):
            expected = record.pop("expected", record.pop("result", None))
            options = {k: v for k, v in record.items() if k not in ("gold", "pred")}
            if "precision=5" in body:
                options["precision"] = 5
            for kind in ("expr", "latex"):
                if f'match_types=["{kind}"]' in body:
                    options["match_types"] = [kind]
            source = f"{path}::{name}"
            cases.append({"source": source, "gold": record["gold"], "pred": record["pred"], "expected": int(expected)})
            cases[-1].update({"options": options} if options else {})
    return cases


def gsm8k_cases(git_dir: str) -> list[dict]:
    rows = show(git_dir, "grade_school_math/data/test.jsonl").splitlines()
    answers = {json.loads(line)["question"]: json.loads(line)["answer"] for line in rows}
    path = "grade_school_math/data/example_model_solutions.jsonl"
    cases = []
    for number, line in enumerate(show(git_dir, path).splitlines()[:GSM8K_QUESTIONS], start=1):
        row = json.loads(line)
        for model in GSM8K_MODELS:
            solution = row[model] if isinstance(row[model], dict) else ast.literal_eval(row[model])
            cases.append(
                {
                    "source": f"{path}:{number}:{model}",
                    "gold": answers[row["question"]],
                    "pred": solution["solution"],
                    "expected": int(solution["is_correct"]),
                }
            )
    return cases


def write(name: str, cases: list[dict]) -> None:
    with open(HERE / name, "w", encoding="utf-8") as out:
        for case in cases:
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"{name}: {len(cases)} cases")


if __name__ == "__main__":
    math_verify_dir, gsm8k_dir = sys.argv[1:3]
    print(f"Math-Verify {head(math_verify_dir)}, grade-school-math {head(gsm8k_dir)}")
    write("math_verify_cases.jsonl", math_verify_cases(math_verify_dir))
    write("math_gsm8k_cases.jsonl", gsm8k_cases(gsm8k_dir))
