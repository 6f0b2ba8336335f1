"""The learning demo's report: paired before/after arithmetic."""

from __future__ import annotations

import math
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from demo_report import paired_summary


def test_paired_summary_counts_fixed_and_broken():
    before = [0, 0, 1, 1, 0, 1, 0, 0]
    after = [1, 1, 1, 0, 1, 1, 0, 1]
    summary = paired_summary(before, after)
    assert (summary["fixed"], summary["broken"]) == (4, 1)
    assert summary["gain"] == pytest.approx(3 / 8)
    diffs = [1, 1, 0, -1, 1, 0, 0, 1]
    mean = sum(diffs) / 8
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 7)
    assert summary["se_gain_paired"] == pytest.approx(sd / math.sqrt(8))


GOOD_METRICS = '{"step": 1, "reward": 0.1, "loss": 0.5}\n{"step": 2, "reward": 0.3, "loss": 0.4}\n'


def _write(tmp_path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / "run" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "run" / name).write_text(text)


# (id, files in the run folder, extra arguments, exit code, what the one ERROR line names); found by a fault hunt:
# the first four were tracebacks, the fifth named a line of its own numbering and no file, the last printed the
# folder it did not write to.
PLOT_CASES = [
    ("entry without a step", {"metrics.jsonl": '{"reward": 0.5}\n' + GOOD_METRICS}, [], 2, ["metrics.jsonl:1"]),
    ("a list, not an entry", {"metrics.jsonl": "[1, 2]\n" + GOOD_METRICS}, [], 2, ["metrics.jsonl:1"]),
    ("state without log_history", {"checkpoint-1/trainer_state.json": '{"global_step": 1}'}, [], 2, ["log_history"]),
    ("only checkpoint-abc", {"checkpoint-abc/trainer_state.json": "{}"}, [], 2, ["no metrics.jsonl"]),
    ("a cut line inside", {"metrics.jsonl": '{"step": 1, "rew\n' + GOOD_METRICS}, [], 2, ["metrics.jsonl:1"]),
    ("a cut last line", {"metrics.jsonl": GOOD_METRICS + '{"step": 3, "rew'}, [], 0, []),
    ("--out an existing folder", {"metrics.jsonl": GOOD_METRICS, "pngs/keep": ""}, ["--out", "{run}/pngs"], 0, []),
]


@pytest.mark.parametrize(
    ("files", "extra", "code", "names"), [c[1:] for c in PLOT_CASES], ids=[c[0] for c in PLOT_CASES]
)
def test_plot_run_reports_bad_metrics_in_one_line(tmp_path, capsys, files, extra, code, names):
    from plot_run import PLOT_FILE, main

    _write(tmp_path, files)
    run = tmp_path / "run"
    assert main([str(run), *[a.replace("{run}", str(run)) for a in extra]]) == code
    out, err = capsys.readouterr()
    if code:
        assert err.count("ERROR") == 1 and "Traceback" not in err and all(n in err for n in names), err
    elif extra:  # the picture goes into the folder, and the path printed is the picture's
        assert out.strip() == str(run / "pngs" / PLOT_FILE) and (run / "pngs" / PLOT_FILE).is_file()
