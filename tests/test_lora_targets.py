"""LoRA target names are checked against the loaded model, with the valid names listed."""

from __future__ import annotations

import pytest

from models import ModelError, check_lora_targets


def test_unknown_lora_target_lists_the_model_layers(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    check_lora_targets(model, ["q_proj", "down_proj"])
    check_lora_targets(model, ["all-linear"])
    with pytest.raises(ModelError) as err:
        check_lora_targets(model, ["q_proj", "query_key_value"])
    message = str(err.value)
    assert "query_key_value not found" in message and "q_proj" in message and "lm_head" not in message
