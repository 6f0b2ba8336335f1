"""Which trackers a run reports to, and that W&B never needs the network to decide."""

from __future__ import annotations

import os

import pytest

from config import build_config


@pytest.mark.parametrize(
    ("settings", "api_key", "trackers", "wandb_mode"),
    [
        ({}, None, [], None),  # default, no credentials: off
        ({}, "key", ["wandb"], None),  # default with credentials: online
        ({"use_wandb": False}, "key", [], None),  # --no-wandb wins over credentials
        ({"wandb_project": "p"}, None, ["wandb"], "offline"),  # asked for, no credentials: offline, never a hang
        ({"wandb_project": "p"}, "key", ["wandb"], None),  # asked for, with credentials: online
        ({"report_to": ["tensorboard"]}, "key", ["tensorboard"], None),  # --report-to is taken as given
        ({"report_to": []}, "key", [], None),  # --report-to none
    ],
)
def test_decide_trackers(monkeypatch, tmp_path, settings, api_key, trackers, wandb_mode):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    if api_key:
        monkeypatch.setenv("WANDB_API_KEY", api_key)
    else:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert build_config(overrides=settings).report_to == trackers
    assert os.environ.get("WANDB_MODE") == wandb_mode
    if settings.get("wandb_project"):
        assert os.environ["WANDB_PROJECT"] == settings["wandb_project"]
