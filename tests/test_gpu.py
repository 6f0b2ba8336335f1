"""GPU backends on a tiny model (skipped without CUDA): `make test-gpu` on a CUDA machine.

Each backend trains through the CLI until a SIGTERM stops it after a saved checkpoint, reloads the adapter for
--eval-only and continues the interrupted run with --resume-from-checkpoint latest.  Every run is its own
process because Unsloth patches transformers and TRL when it is imported; none may print Unsloth's
import-order warning.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT, build_tiny_model, run_train_grpo, tiny_cli_args

pytestmark = [pytest.mark.gpu]

# backend name -> (--backend, load_in_4bit)
BACKENDS = {
    "unsloth-4bit": ("unsloth", True),
    "transformers-4bit": ("transformers", True),
    "transformers-bf16": ("transformers", False),
}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def gpu_model_dir(tmp_path_factory):
    if not cuda_available():
        pytest.skip("needs a CUDA GPU")
    # head_dim 32: Unsloth's fused attention and RoPE kernels need realistic head sizes
    return build_tiny_model(tmp_path_factory.mktemp("gpu-model"), hidden_size=128)


IMPORT_ORDER_WARNING = "should be imported before"


def run_cli(tmp_path, *args, expect: int = 0, **env: str):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    result = run_train_grpo(list(args), tmp_path, {**environment, **env})
    assert result.returncode == expect, result.stderr[-4000:]
    assert IMPORT_ORDER_WARNING not in result.stdout + result.stderr
    return result


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_trains_saves_evaluates_and_resumes(backend, gpu_model_dir, tmp_path):
    if backend.startswith("unsloth"):
        pytest.importorskip("unsloth")
    backend_name, load_in_4bit = BACKENDS[backend]
    config = tmp_path / "backend.json"
    config.write_text(json.dumps({"load_in_4bit": load_in_4bit, "save_steps": 1}))
    # One optimizer step per generation round, so that the rewards (and the SIGTERM below) see every step.
    backend_args = ["--backend", backend_name, "--config", str(config), "--generation-batch-size", "4"]
    out = tmp_path / "run"
    common = tiny_cli_args(
        gpu_model_dir,
        out,
        "--eval-samples",
        "8",
        *backend_args,
        completion_length=16,
        lora_rank=8,
        rewards=("recorder.record_reward",),
    )
    # SIGTERM during step 2: the step ends, checkpoint-2 is saved, the run exits as interrupted (130).
    run_cli(tmp_path, *common, "--max-steps", "3", expect=130, GRPO_SIGTERM_AT_STEP="1")
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-3").exists()
    log = (out / "grpo_training.log").read_text()
    assert f"with the {backend_name} backend" in log

    run_cli(tmp_path, *common, "--eval-only")
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_prompts"] == 8

    run_cli(tmp_path, *common, "--max-steps", "3", "--resume-from-checkpoint", "latest")
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert (out / "adapter_model.safetensors").is_file()


DECODE_ATTENTION_CHECK = """
import json, torch, unsloth
from torch.profiler import ProfilerActivity, profile
from unsloth.utils.attention_dispatch import decode_scaled_dot_product_attention as unsloth_sdpa
from unsloth_decode import groups_as_rows

torch.manual_seed(0)
batch, heads, kv_heads, dim, kv_len = 16, 32, 8, 128, 200  # Llama-3.1-8B's attention
query = torch.randn(batch, 1, heads, dim, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
keys, values = (torch.randn(kv_len, batch, kv_heads, dim, device="cuda", dtype=torch.bfloat16).permute(1, 2, 0, 3)
                for _ in range(2))
mask = torch.ones(batch, 1, 1, kv_len, device="cuda", dtype=torch.bool)
mask[: batch // 2, ..., :30] = False
report = {}
rows = groups_as_rows(unsloth_sdpa)
for name, sdpa in (("unsloth", unsloth_sdpa), ("rows", rows)):
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        report[name] = sdpa(query, keys, values, attn_mask=mask, enable_gqa=True).float()
    report[name + "_math"] = any("attention_math" in e.key for e in prof.key_averages())
# The same mask tensor changed in place (the bias made for it must follow), then a new mask of another length
mask[-1, ..., :50] = False
changed = [f(query, keys, values, attn_mask=mask, enable_gqa=True).float() for f in (unsloth_sdpa, rows)]
shorter = [f(query, keys[:, :, :77], values[:, :, :77], attn_mask=mask[..., :77].clone(), enable_gqa=True).float()
           for f in (unsloth_sdpa, rows)]
print(json.dumps({"max_diff": max((a - b).abs().max().item() for a, b in
                                  ((report["unsloth"], report["rows"]), changed, shorter)),
                  "unsloth_math": report["unsloth_math"], "rows_math": report["rows_math"],
                  "direct": rows.step_bias.direct}))
"""


def test_decode_attention_as_rows_matches_unsloths_without_the_math_kernel(tmp_path):
    """On the GPU, with Unsloth's own decode SDPA: the same attention (also after the mask changes in place and
    for a key length that is no multiple of 16), straight from the memory-efficient kernel, not SDPA's math."""
    if not cuda_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("unsloth")
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", DECODE_ATTENTION_CHECK], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["max_diff"] < 2e-2 and not report["rows_math"] and report["direct"], report
    assert report["unsloth_math"], "Unsloth's own call no longer falls back to math: the fix may be unneeded"


STOP_CHECK_CHECK = """
import json, sys, torch
from transformers import AutoModelForCausalLM
from transformers.generation import utils
import models

model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16).cuda()
used = []
shipped_call = utils.DeferredStopCheck.__call__
def recording_call(self, *args, **kwargs):
    used.append(True)
    return shipped_call(self, *args, **kwargs)
utils.DeferredStopCheck.__call__ = recording_call
prompts = torch.randint(3, model.config.vocab_size, (6, 9), device="cuda")
# Which token the rows generate 4th: as the end-of-sequence token, every row stops early (identical rows)
# or some rows do (distinct rows), so both the undone extra step and the padding after a stop are checked.
probe = model.generate(prompts[:1], max_new_tokens=6, do_sample=False)
eos = int(probe[0, prompts.shape[1] + 3])
batches = {"identical": prompts[:1].repeat(6, 1), "distinct": prompts}
runs = {}
for deferred in (False, True):  # the patch is for the process: every waiting run first
    if deferred:
        models.defer_stop_check_on_cuda()
    for name, batch in batches.items():
        used.clear()
        out = model.generate(batch, max_new_tokens=20, do_sample=False, eos_token_id=eos, pad_token_id=0)
        runs[name, deferred] = (out.tolist(), bool(used))
report = {name: {"equal": runs[name, False][0] == runs[name, True][0], "deferred_used": runs[name, True][1],
                 "plain_used": runs[name, False][1], "length": len(runs[name, True][0][0])} for name in batches}
print(json.dumps(report))
"""


def test_the_deferred_stop_check_on_cuda_generates_what_the_waiting_one_does(gpu_model_dir):
    """transformers' deferred stop check, switched on for CUDA: the same tokens as its waiting loop, both when all
    sequences stop early (the one extra step undone) and when only some do."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", STOP_CHECK_CHECK, str(gpu_model_dir)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for case in report.values():
        assert case["equal"] and case["deferred_used"] and not case["plain_used"], report
    assert report["identical"]["length"] < 9 + 20, report  # every row stopped early
