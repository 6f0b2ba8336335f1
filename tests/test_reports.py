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
