"""Run under torchrun (2 CPU processes, gloo) by tests/test_multiprocess.py: load the model as an FSDP2 launch
with ``fsdp_cpu_ram_efficient_loading`` does (only the main process reads the weights), shard it with
accelerate's own ``fsdp2_prepare_model``, gather what a save gathers (``checkpoints.gather_adapter_only``), and
write what each process then holds to ``OUT/rank<N>.json``.

accelerate starts FSDP only on GPUs, so its ``Accelerator`` is stood in for by the few attributes that its
``_prepare_fsdp2`` reads; the optimizer is created before sharding as transformers' Trainer does under FSDP2,
and the sharding, the broadcast of the main process's weights, the buffers and the switch of the optimizer's
parameters to their shards are accelerate's and torch's code.

    torchrun --nproc_per_node 2 tests/fsdp2_load_check.py MODEL_DIR OUT
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.update({"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"})


def main(model_dir: str, out: Path) -> None:
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator
    from accelerate.utils import DynamoBackend, FullyShardedDataParallelPlugin
    from peft import get_peft_model_state_dict

    import models
    from checkpoints import gather_adapter_only
    from config import GRPOConfig

    config = GRPOConfig(model_name=model_dir, load_in_4bit=False, lora_rank=4, output_dir=str(out / "run"))
    rank = dist.get_rank()
    model = models.load_model(config).model
    loaded = {
        "frozen_devices": sorted({p.device.type for p in model.parameters() if not p.requires_grad}),
        # accelerate maps the optimizer's parameters by name across the wrapping: every process must hold the
        # same parameters under the same names (a tied LM head included)
        "names": [name for name, _ in model.named_parameters()],
    }
    if rank == 0:
        loaded["sums"] = {name: float(p.float().sum()) for name, p in model.named_parameters()}
        loaded["adapter"] = {name: float(t.float().sum()) for name, t in get_peft_model_state_dict(model).items()}
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        cpu_ram_efficient_loading=True,
        auto_wrap_policy="transformer_based_wrap",
        state_dict_type="FULL_STATE_DICT",
    )
    accelerator = types.SimpleNamespace(
        state=types.SimpleNamespace(fsdp_plugin=plugin, dynamo_plugin=types.SimpleNamespace(backend=DynamoBackend.NO)),
        torch_device_mesh=None,
        parallelism_config=None,
        device=torch.device("cpu"),
        mixed_precision="no",
        is_main_process=rank == 0,
        process_index=rank,
        num_processes=dist.get_world_size(),
        fp8_backend=None,
        _models=[],
        _prepare_one=lambda obj, first_pass=False: obj,
        wait_for_everyone=dist.barrier,
        is_fsdp2=True,
    )
    accelerator._get_named_parameters = types.MethodType(Accelerator._get_named_parameters, accelerator)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model, optimizer = Accelerator._prepare_fsdp2(accelerator, model, optimizer)
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    optimized = [id(p) for group in optimizer.param_groups for p in group["params"]]
    sharded = {name: float(p.full_tensor().float().sum()) for name, p in model.named_parameters()}
    prompt = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        logits = model(input_ids=prompt).logits
        # as GRPO's rollout does: every process decodes with the sharded model, gathering one layer at a time,
        # and their completions end at different steps (here: 2 new tokens on the main process, 6 on the other).
        # The process done first must keep stepping (transformers' synced_gpus, on for modules that torch's
        # fully_shard marks as managed), or its next collectives would pair with the other's decode steps.
        length = 2 if rank == 0 else 6
        steps = []
        hook = model.get_base_model().register_forward_pre_hook(lambda module, args: steps.append(1))
        generated = model.generate(input_ids=prompt, max_new_tokens=length, min_new_tokens=length, do_sample=False)
        hook.remove()
    # what transformers' save_model gathers under FSDP (accelerator.get_state_dict), as checkpoints.py sets it
    trainer = types.SimpleNamespace(accelerator=types.SimpleNamespace(is_fsdp2=True))
    gather_adapter_only(trainer)
    gathered = trainer.accelerator.get_state_dict(model)
    adapter = get_peft_model_state_dict(model, state_dict=gathered) if gathered else {}
    trained = train_step_and_checkpoint(plugin, accelerator, model, optimizer, prompt, out / "checkpoint")
    result = {
        # the optimizer holds each trainable shard once, and nothing else
        "optimizer_holds_the_trainable_shards": optimized == trainable,
        "checkpoint": trained,
        "loaded": loaded,
        "sharded": sharded,
        "logits_sum": float(logits.float().sum()),
        "generated": generated[0, prompt.shape[1] :].tolist(),
        "decode_steps": len(steps),
        "gathered_keys": sorted(gathered),
        "adapter": {name: float(t.float().sum()) for name, t in adapter.items()},
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def train_step_and_checkpoint(plugin, accelerator, model, optimizer, prompt, folder: Path) -> dict:
    """One optimizer step on the sharded model, the FSDP parts of a Trainer checkpoint (accelerate's
    ``save_fsdp_model`` with ``adapter_only`` and ``save_fsdp_optimizer``), then the same parts loaded back, as a
    resume does, over spoiled values: the files the main process wrote, and whether each process got its shards of
    the adapter and of the optimizer state back."""
    import torch
    from accelerate.utils.fsdp_utils import load_fsdp_model, load_fsdp_optimizer, save_fsdp_model, save_fsdp_optimizer

    model(input_ids=prompt, labels=prompt).loss.backward()
    optimizer.step()
    save_fsdp_model(plugin, accelerator, model, str(folder), adapter_only=True)
    save_fsdp_optimizer(plugin, accelerator, optimizer, model, str(folder))
    files = sorted(path.name for path in folder.iterdir()) if accelerator.is_main_process else []
    trainable = [p for p in model.parameters() if p.requires_grad]
    saved = [p.to_local().clone() for p in trainable]
    moments = [optimizer.state[p]["exp_avg"].to_local().clone() for p in trainable]
    with torch.no_grad():
        for p in trainable:
            p.add_(1.0)
            optimizer.state[p]["exp_avg"].zero_()
    load_fsdp_model(plugin, accelerator, model, str(folder), adapter_only=True)
    load_fsdp_optimizer(plugin, accelerator, optimizer, model, str(folder))
    trainable = [p for p in model.parameters() if p.requires_grad]
    return {
        "files": files,
        "adapter_restored": all(torch.equal(p.to_local(), t) for p, t in zip(trainable, saved, strict=True)),
        "moments_restored": all(
            torch.equal(optimizer.state[p]["exp_avg"].to_local(), m) for p, m in zip(trainable, moments, strict=True)
        ),
    }


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
