"""Two processes with the gloo backend on CPU (torchrun), end to end on a tiny model: both ranks take part,
only the main process writes, an interrupted run resumes under several processes, and the adapter loads."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import ROOT, run_train_grpo, tiny_cli_args

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


def torchrun(args: list[str], cwd: Path, record: Path, **env_extra: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "GRPO_RECORD_FILE": str(record), "OMP_NUM_THREADS": "1"}
    return run_train_grpo(args, cwd, {**env, **env_extra}, launcher=TORCHRUN)


@pytest.mark.slow  # two processes on 2 cores: about a minute
def test_two_processes_train_save_and_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "save.json"
    config.write_text(json.dumps({"save_steps": 1}))
    args = tiny_cli_args(
        tiny_model_dir, out, "--config", str(config), "--eval-samples", "8", rewards=("recorder.record_reward",)
    )
    record = tmp_path / "seen.jsonl"
    # SIGTERM reaches rank 1 alone in step 2 (`kill PID`): the ranks agree to stop, so step 2 is finished and
    # saved by the main process, then the run exits; without the agreement rank 0 would wait in step 3 forever.
    first = torchrun([*args, "--max-steps", "3"], tmp_path, record, GRPO_SIGTERM_AT_STEP="1", GRPO_SIGTERM_RANK="1")
    assert first.returncode != 0 and (out / "checkpoint-2").is_dir(), first.stdout[-2000:] + first.stderr[-3000:]

    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert {entry["rank"] for entry in seen} == {0, 1}, "both ranks score completions"
    steps_by_rank = {rank: sorted(e["step"] for e in seen if e["rank"] == rank) for rank in (0, 1)}
    assert steps_by_rank[0] == steps_by_rank[1] == [0, 1], "each rank scores its share of every step"
    assert not (out / "checkpoint-3").exists()
    assert (out / "grpo_training.log").read_text().count("run directory:") == 1, "only the main process logs"
    said = first.stdout + first.stderr
    assert said.count("resume with:") == 1, "the resume hint is said once, by the main process"
    assert re.search(r"<the same launcher and options as this run \(2 processes\)> \S*train_grpo\.py ", said)

    resumed = torchrun([*args, "--max-steps", "3", "--resume-from-checkpoint", "latest"], tmp_path, record)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3

    evaluation = run_train_grpo([*args, "--eval-only"], tmp_path, {**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "loaded adapter weights" in (out / "grpo_training.log").read_text()


# What `accelerate launch --config_file config/accelerate/fsdp2.yaml` sets; tests/cpu_fsdp turns accelerate's CPU
# process group into an FSDP state (accelerate starts FSDP only on GPUs), the rest is the real CLI.
FSDP2_ON_CPU = {
    "PYTHONPATH": f"{ROOT / 'tests' / 'cpu_fsdp'}:{ROOT / 'tests'}",
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_CPU_RAM_EFFICIENT_LOADING": "true",
    "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
}


@pytest.mark.slow  # two processes, then one: about 45 s
def test_fsdp2_processes_train_checkpoint_and_resume(tiny_model_dir, tmp_path):
    """The CLI under FSDP2 (bf16-style full weights, only the main process reading them): it trains, a stop that
    reaches one process leaves a checkpoint with FSDP's model and optimizer files, and the run resumes from it.
    Before the optimizer fix the first run hung in its first checkpoint, as on 4 x H200; before the checkpoint
    check knew FSDP's optimizer file, resuming found "no complete checkpoint"."""
    out = tmp_path / "run"
    config = tmp_path / "fsdp.json"
    config.write_text(json.dumps({"load_in_4bit": False, "save_steps": 1}))
    args = tiny_cli_args(
        tiny_model_dir, out, "--config", str(config), "--eval-samples", "8", rewards=("recorder.record_reward",)
    )
    record = tmp_path / "seen.jsonl"
    stop = {"GRPO_SIGTERM_AT_STEP": "1", "GRPO_SIGTERM_RANK": "1"}
    first = torchrun([*args, "--max-steps", "3"], tmp_path, record, **FSDP2_ON_CPU, **stop)
    assert first.returncode != 0 and (out / "checkpoint-2").is_dir(), first.stdout[-2000:] + first.stderr[-3000:]
    assert {"optimizer.bin", "pytorch_model_fsdp.bin", "adapter_model.safetensors"} <= {
        path.name for path in (out / "checkpoint-2").iterdir()
    }
    # resuming it in one plain process is refused before loading, with the two ways on (it failed after loading)
    plain_env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    plain = run_train_grpo([*args, "--max-steps", "3", "--resume-from-checkpoint", "latest"], tmp_path, plain_env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr[-3000:]
    assert "was written under FSDP" in plain.stderr and "--init-adapter" in plain.stderr
    resumed = torchrun(
        [*args, "--max-steps", "3", "--resume-from-checkpoint", "latest"], tmp_path, record, **FSDP2_ON_CPU
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    log = (out / "grpo_training.log").read_text()
    assert "resuming from" in log and "checkpoint-2 (step 2)" in log
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3
    # the adapter the FSDP run saved loads into one plain process, as a user evaluates it
    evaluation = run_train_grpo([*args, "--eval-only"], tmp_path, plain_env)
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "loaded adapter weights" in (out / "grpo_training.log").read_text()


@pytest.mark.slow  # two processes: about 15 s
def test_fsdp2_processes_other_than_the_main_one_receive_its_weights(tiny_model_dir, tmp_path):
    """Under FSDP2's cpu-ram-efficient loading only the main process reads the weights; the other one holds
    shapes (no memory: a 70B model's zero copies once exhausted a 512 GiB host) and, once accelerate has
    sharded the model, the same weights and the same outputs."""
    import subprocess
    import sys

    command = [sys.executable, *TORCHRUN, str(ROOT / "tests" / "fsdp2_load_check.py"), str(tiny_model_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    main, other = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert main["loaded"]["frozen_devices"] == ["cpu"] and other["loaded"]["frozen_devices"] == ["meta"]
    # the same parameters under the same names: accelerate maps the optimizer's parameters by name, and an LM
    # head left untied on the other process failed its FSDP2 wrapping (4 x H200)
    assert main["loaded"]["names"] == other["loaded"]["names"]
    assert main["sharded"] == other["sharded"]
    assert all(main["sharded"][name] == pytest.approx(value) for name, value in main["loaded"]["sums"].items())
    assert main["logits_sum"] == pytest.approx(other["logits_sum"])
    # each process decodes its own length with the same (gathered) weights: the same greedy tokens
    assert len(main["generated"]) == 2 and len(other["generated"]) == 6
    assert main["generated"] == other["generated"][:2]
    assert main["decode_steps"] == other["decode_steps"] == 6, "the process done first keeps gathering for the other"
    # a save gathers the trainable (LoRA) weights only, into the main process, and they are the adapter
    frozen = [key for key in main["gathered_keys"] if ".lora_" not in key]
    assert main["gathered_keys"] and frozen == ["base_model.model.lm_head.weight"], frozen  # tied: torch keeps it
    assert other["gathered_keys"] == []
    assert main["adapter"] == pytest.approx(main["loaded"]["adapter"])
    # accelerate switches the optimizer's parameters to their shards by data pointer: on the other process (meta
    # weights, pointer 0) all once mapped to one tensor, its LoRA shards never trained and a checkpoint's optimizer
    # gather waited forever on the GPUs (4 x H200)
    assert main["optimizer_holds_the_trainable_shards"] and other["optimizer_holds_the_trainable_shards"]
    # a Trainer checkpoint's FSDP parts after an optimizer step, written by the main process alone, and loaded back
    # (as a resume does) into every process's shards of the adapter and of Adam's moments
    assert main["checkpoint"]["files"] == ["optimizer.bin", "pytorch_model_fsdp.bin"]
    for process in (main, other):
        assert process["checkpoint"]["adapter_restored"] and process["checkpoint"]["moments_restored"]


@pytest.mark.slow  # two processes: about 20 s
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--generation-batch-size", "6"], "generation_batch_size (6)"),  # a bad value: the config's error
        (["--no-such-flag"], "unrecognized arguments"),  # argparse's
    ],
)
def test_a_bad_input_under_a_launcher_is_said_once(tiny_model_dir, tmp_path, extra, message):
    """Every process meets the same bad input; the machine's first process says it, in one ERROR line."""
    args = tiny_cli_args(tiny_model_dir, tmp_path / "run", *extra)
    done = torchrun(args, tmp_path, tmp_path / "seen.jsonl")
    output = done.stdout + done.stderr
    ours = [line for line in output.splitlines() if line.startswith("ERROR") or " ERROR " in line]
    assert done.returncode != 0 and len(ours) == 1 and message in ours[0], output[-3000:]
