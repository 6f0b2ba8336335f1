"""Which backend a launch gets, and how a model is loaded on the processes of an FSDP run."""

from __future__ import annotations

import pytest

import config_base
import models
from config import GRPOConfig

# (requested, processes, launcher, expected): the several-GPU rows come from docs/benchmarks.md (4 x H200)
CHOICES = [
    ("auto", 1, None, "unsloth"),
    ("unsloth", 1, None, "unsloth"),
    ("transformers", 1, None, "transformers"),
    ("auto", 2, None, "transformers"),  # DDP: transformers measured 1.13x (2 GPUs) and 1.20x (4) Unsloth
    ("unsloth", 4, None, "unsloth"),  # by name: Unsloth under DDP trains, saves and resumes
    ("transformers", 4, None, "transformers"),
    ("auto", 4, "ACCELERATE_USE_FSDP", "transformers"),
    ("unsloth", 2, "ACCELERATE_USE_FSDP", "transformers"),
    ("unsloth", 2, "ACCELERATE_USE_DEEPSPEED", "transformers"),
]


def launch(monkeypatch, processes: int, launcher: str | None) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.setenv(name, "true" if name == launcher else "false")


def on_a_gpu_with_unsloth(monkeypatch) -> None:
    """A CUDA host with Unsloth installed, as both the import decision and the backend choice see it."""
    import importlib.util

    import torch

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "unsloth" else find_spec(name, *a)
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(models, "cuda_available", lambda: True)
    monkeypatch.setattr(models, "unsloth_installed", lambda: True)


@pytest.mark.parametrize(("requested", "processes", "launcher", "expected"), CHOICES)
def test_backend_for_the_launch_agrees_with_the_import_decision(monkeypatch, requested, processes, launcher, expected):
    """The CLI imports Unsloth (``import_unsloth_first``) exactly when the backend will be Unsloth: under DDP with
    auto, importing it anyway patched TRL and the transformers backend failed (4 x H200: 'for_training')."""
    on_a_gpu_with_unsloth(monkeypatch)
    launch(monkeypatch, processes, launcher)
    imported = config_base.unsloth_may_be_used(requested)
    assert imported is (expected == "unsloth")
    monkeypatch.setattr(models, "unsloth_imported", lambda: imported)
    assert models.resolve_backend(requested) == expected


def test_transformers_in_a_process_unsloth_patched_is_refused_with_the_fix(monkeypatch):
    """A script that imported ``config`` (auto: Unsloth imported on a GPU host) and then asks for transformers."""
    on_a_gpu_with_unsloth(monkeypatch)
    launch(monkeypatch, 1, None)
    monkeypatch.setattr(models, "unsloth_imported", lambda: True)
    with pytest.raises(models.BackendError, match=r"import_unsloth_first\('transformers'\) before importing config"):
        models.resolve_backend("transformers")


def test_auto_follows_a_process_that_decided_against_unsloth(monkeypatch):
    """``import_unsloth_first('transformers')`` first, then a config with backend auto: transformers, not a late
    Unsloth import after transformers and TRL."""
    on_a_gpu_with_unsloth(monkeypatch)
    launch(monkeypatch, 1, None)
    monkeypatch.setattr(models, "unsloth_imported", lambda: False)
    assert models.resolve_backend("auto") == "transformers"


def test_without_a_gpu_auto_is_transformers_and_unsloth_is_refused(monkeypatch):
    monkeypatch.setattr(models, "cuda_available", lambda: False)
    assert models.resolve_backend("auto") == "transformers"
    with pytest.raises(models.BackendError, match="needs a CUDA GPU"):
        models.resolve_backend("unsloth")


FSDP_RANK = {"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}


@pytest.mark.parametrize(
    ("env", "four_bit", "expected"),
    [
        ({**FSDP_RANK, "RANK": "1"}, False, True),
        ({**FSDP_RANK, "RANK": "0"}, False, False),  # the main process reads the weights
        ({**FSDP_RANK, "RANK": "1"}, True, False),  # accelerate shards 4-bit weights from every process's copy
        ({**FSDP_RANK, "FSDP_CPU_RAM_EFFICIENT_LOADING": "false", "RANK": "1"}, False, False),
        ({"ACCELERATE_USE_FSDP": "false", "RANK": "1"}, False, False),  # DDP: every process loads
    ],
)
def test_which_processes_receive_weights_from_the_main_one(monkeypatch, env, four_bit, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert models.receives_weights_from_main(GRPOConfig(load_in_4bit=four_bit)) is expected


def test_a_receiving_process_holds_shapes_only(monkeypatch, tiny_model_dir):
    """No memory for the frozen weights on the other FSDP processes, but the same parameters, LoRA included, as the
    main one, and each trainable one with storage of its own (accelerate maps the optimizer's parameters to their
    shards by data pointer)."""
    for name, value in {**FSDP_RANK, "RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    config = GRPOConfig(model_name=str(tiny_model_dir), load_in_4bit=False, lora_rank=4)
    receiving = models.load_model(config).model
    monkeypatch.setenv("RANK", "0")
    main = models.load_model(config).model
    assert {p.device.type for p in receiving.parameters() if not p.requires_grad} == {"meta"}
    trainable = [p for p in receiving.parameters() if p.requires_grad]
    assert trainable and len({p.data_ptr() for p in trainable}) == len(trainable)
    assert all(p.device.type == "cpu" for p in trainable)
    # accelerate broadcasts the main process's state dict entry by entry into these: same keys, shapes, dtypes
    shapes = {name: (t.shape, t.dtype) for name, t in main.state_dict().items()}
    assert {name: (t.shape, t.dtype) for name, t in receiving.state_dict().items()} == shapes
    assert receiving.generation_config.eos_token_id == main.generation_config.eos_token_id


@pytest.mark.parametrize(("processes", "visible", "expected"), [(1, 4, 1), (1, 1, 1), (2, 1, 1), (1, 0, 0)])
def test_plain_python_with_several_gpus_trains_on_one_and_says_how_to_use_all(
    monkeypatch, caplog, processes, visible, expected
):
    """transformers' Trainer counts every visible GPU for a process without a launcher and would wrap the model in
    nn.DataParallel, which TRL refuses after the model is loaded (seen on a 4-GPU host with `python`)."""
    from grpo_trainer import one_gpu_per_process

    launch(monkeypatch, 1, None)
    config = GRPOConfig()
    _ = config.device  # transformers sets up the devices (CPU here) and counts them
    config._n_gpu = visible  # as transformers counts them on a host with that many GPUs
    launch(monkeypatch, processes, None)
    one_gpu_per_process(config)
    assert config.n_gpu == expected
    said = "GPUs are visible to one process" in caplog.text
    assert said is (visible > 1 and processes == 1)
    if said:
        assert "--num_processes 4" in caplog.text


def test_the_reason_for_the_backend_is_said_once_per_process(monkeypatch, caplog):
    """The config build and the model load both resolve the backend; the log said its reason twice."""
    on_a_gpu_with_unsloth(monkeypatch)
    launch(monkeypatch, 2, "ACCELERATE_USE_FSDP")
    monkeypatch.setattr(models, "_said", set())
    for _ in range(2):
        assert models.resolve_backend("auto") == "transformers"
    assert caplog.text.count("Unsloth is not sharded by FSDP") == 1


@pytest.mark.parametrize(
    ("device", "cache", "returned", "assistant", "expected"),
    [
        ("cuda", None, False, False, True),
        ("cuda", "not croppable", False, False, True),  # a cache that is dropped needs no cropping
        ("cuda", "croppable", True, False, True),
        ("cuda", "not croppable", True, False, False),  # a returned cache must be croppable
        ("cuda", None, False, True, False),  # assisted decoding keeps its own loop
        ("cpu", None, False, False, False),  # transformers' own decision elsewhere
        ("mps", None, False, False, True),
    ],
)
def test_the_stop_check_is_deferred_on_cuda_where_transformers_defers_it_on_mps(
    monkeypatch, device, cache, returned, assistant, expected
):
    import types

    import torch
    from transformers.generation.utils import DeferredStopCheck

    monkeypatch.setattr(DeferredStopCheck, "is_supported", DeferredStopCheck.is_supported)
    # set, then deleted: both undone afterwards (a delattr of a missing attribute records nothing to undo)
    monkeypatch.setattr(DeferredStopCheck, "_grpo_shipped_is_supported", None, raising=False)
    monkeypatch.delattr(DeferredStopCheck, "_grpo_shipped_is_supported")
    models.defer_stop_check_on_cuda()
    models.defer_stop_check_on_cuda()  # once per process: the second call wraps nothing
    assert DeferredStopCheck._grpo_shipped_is_supported.__qualname__ == "DeferredStopCheck.is_supported"
    caches = {None: None, "croppable": types.SimpleNamespace(is_croppable=True)}
    caches["not croppable"] = types.SimpleNamespace(is_croppable=False)
    decided = DeferredStopCheck.is_supported(torch.device(device), caches[cache], returned, assistant)
    assert decided is expected
