"""The shipped accelerate configs load and say what their names promise."""

from __future__ import annotations

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from conftest import ROOT


@pytest.mark.parametrize(
    ("name", "distributed_type", "zero_stage"),
    [("ddp", "MULTI_GPU", None), ("zero2", "DEEPSPEED", 2), ("zero3", "DEEPSPEED", 3), ("fsdp2", "FSDP", None)],
)
def test_accelerate_configs(name, distributed_type, zero_stage):
    config = load_config_from_file(str(ROOT / "config" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == distributed_type
    assert config.num_processes == 2 and config.mixed_precision == "bf16"
    if zero_stage:
        assert config.deepspeed_config["zero_stage"] == zero_stage
