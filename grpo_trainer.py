"""``GRPOTrainer``: the seed's training API, wrapping ``trl.GRPOTrainer`` on a LoRA model.

    trainer = GRPOTrainer(config)
    trainer.load_model()
    trainer.train(dataset)
    trainer.save_model()

TRL is imported only inside methods, after ``load_model`` has imported Unsloth when Unsloth is the backend.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import torch

# isort: off
from config import (
    ConfigError,
    GRPOConfig,
    reward_weights_for,
)  # first: it imports Unsloth, when it may be the backend, before transformers/TRL

# isort: on
from callbacks import GracefulStop, MetricsLogger, ResumeCheck, prepare_trainer
from checkpoints import (
    check_adapter_matches,
    complete_checkpoints,
    completes_its_run,
    read_trainer_state,
    resolve_checkpoint,
)
from data_loader import CHOSEN, PROMPT, REJECTED, DataError, prompt_token_counts
from memory import out_of_memory_error
from models import LoadedModel, import_unsloth_first, load_adapter, load_model
from rewards import (
    RewardFunc,
    build_reward_functions,
    completion_text,
    guard_rewards,
    guarded_reward,
    score_completions,
    weighted_total,
)
from run_utils import (
    NEW,
    RunDirError,
    check_trains_a_step,
    close_run,
    decide_run_dir,
    is_main_process,
    keep_previous,
    open_run_dir,
    run_dir_state,
    world_size,
)

__all__ = ["GRPOConfig", "GRPOTrainer"]

logger = logging.getLogger(__name__)

EVAL_RESULTS_FILE = "eval_results.json"
SAMPLES_IN_REPORT = 5


def build_rewards(config: GRPOConfig) -> list[RewardFunc]:
    """The run's reward functions, in the order of ``config.reward_weights``: the named ones, then the reward model.

    Each is guarded (never raises or hangs past ``reward_timeout``); a reward model is loaded now, so that a wrong
    path fails before the policy model is loaded.
    """
    functions, _ = build_reward_functions(
        config.reward_functions, config.reward_config, config.reward_config_name, reward_timeout=config.reward_timeout
    )
    if config.reward_model:
        from reward_model import get_reward_model_reward

        scorer = get_reward_model_reward(config.reward_model)
        # No time limit: it is a forward pass of our own, and --reward-preview scores thousands of rows in one call.
        functions.append(guarded_reward(scorer, scorer.__name__, timeout=None))
    return functions


def one_gpu_per_process(args) -> None:
    """Plain ``python`` on a machine with several GPUs trains on this process's GPU and says how to use them all.

    transformers' Trainer would wrap the model in ``nn.DataParallel`` there, which TRL's GRPOTrainer refuses with
    an error after the model is loaded; the model sits on one GPU anyway (``device_map``).  Trainer itself sets
    ``_n_gpu = 1`` for a model it does not replicate, as here."""
    if world_size() > 1 or args.n_gpu <= 1:
        return
    logger.warning(
        "%d GPUs are visible to one process: training on %s only. To train on all of them: accelerate launch "
        "--config_file config/accelerate/ddp.yaml --num_processes %d train_grpo.py ... (README: GPU 여러 장)",
        args.n_gpu,
        args.device,
        args.n_gpu,
    )
    args._n_gpu = 1


class GRPOTrainer:
    """Group Relative Policy Optimization on a LoRA adapter, with the rewards named in ``config``."""

    def __init__(
        self,
        config: GRPOConfig,
        reward_functions: list[RewardFunc] | None = None,
        reward_weights: list[float] | None = None,
    ) -> None:
        if not isinstance(config, GRPOConfig):  # e.g. a dict: an AttributeError deep inside otherwise (fault hunt)
            raise TypeError(
                f"GRPOTrainer needs a GRPOConfig, got {type(config).__name__}; build one with GRPOConfig(**settings) "
                "or config.load_config_from_file(path)."
            )
        config.validate()  # the seed's API sets attributes by hand after building the config
        self.config = config
        self._rewards_given = reward_functions is not None
        # the caller's own rewards are guarded like the config's (checked now, so a wrong one fails here)
        self._reward_functions = (
            guard_rewards(reward_functions, config.reward_config, config.reward_config_name, config.reward_timeout)
            if reward_functions is not None
            else None
        )
        self._reward_weights = reward_weights
        self.loaded: LoadedModel | None = None
        self.trl_trainer = None
        self.run_dir: Path | None = None  # the folder this object's run owns (the CLI opens it before training)
        self.adapter_dir: str | Path | None = None  # the adapter load_model put on the base model, if any

    # ----------------------------------------------------------------------------------------------
    @property
    def reward_functions(self) -> list[RewardFunc]:
        """The rewards given to the constructor (guarded like the config's), else those the config names (built on
        first use)."""
        if self._reward_functions is None:
            self._reward_functions = build_rewards(self.config)
        return self._reward_functions

    @property
    def reward_weights(self) -> list[float]:
        if self._reward_weights is not None:
            return list(self._reward_weights)
        if self._rewards_given:
            # the caller's own rewards: TRL's default weight 1.0 each (the config's weights are for its own rewards)
            return [1.0] * len(self.reward_functions)
        if self.config.reward_weights is None:
            config = self.config
            model_weight = config.reward_model_weight if config.reward_model else None
            return reward_weights_for(
                config.reward_functions, config.reward_config, config.reward_config_name, model_weight
            )
        return list(self.config.reward_weights)

    @property
    def model(self):
        return self._require_loaded().model

    @property
    def tokenizer(self):
        return self._require_loaded().tokenizer

    def _require_loaded(self) -> LoadedModel:
        if self.loaded is None:
            raise RuntimeError("call load_model() first")
        return self.loaded

    def load_model(self, adapter_dir: str | Path | None = None):
        """Load the base model with a LoRA adapter (fresh, or the one saved in ``adapter_dir``)."""
        import_unsloth_first(self.config.backend)
        self.loaded = load_model(self.config)
        self.adapter_dir = adapter_dir
        if adapter_dir is not None:
            load_adapter(self.loaded, adapter_dir)
        trainable = sum(p.numel() for p in self.loaded.model.parameters() if p.requires_grad)
        logger.info(
            "model ready on %s (%s backend), %d trainable LoRA parameters",
            self.loaded.device,
            self.loaded.backend,
            trainable,
        )
        return self.loaded.model

    # ----------------------------------------------------------------------------------------------
    def build_trl_trainer(self, train_dataset, eval_dataset=None, callbacks: list | None = None):
        """The underlying ``trl.GRPOTrainer`` (also useful to customise before ``train``)."""
        loaded = self._require_loaded()
        args = self.config
        if list(args.reward_weights or []) != self.reward_weights:
            # Weights given to the constructor, or a config built in Python without build_config: TRL reads them
            # from its args, so it gets a copy that carries them (the caller's config is left as it is).
            args = dataclasses.replace(args, reward_weights=self.reward_weights)
        import trl

        if loaded.device == "cpu":
            from cpu_support import allow_indexed_cpu_locations, use_torch_logprob_kernel

            use_torch_logprob_kernel()
            allow_indexed_cpu_locations()
        else:
            one_gpu_per_process(args)
        try:
            self.trl_trainer = trl.GRPOTrainer(
                model=loaded.model,
                reward_funcs=self.reward_functions,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=loaded.tokenizer,
                callbacks=callbacks,
            )
        except (ValueError, ImportError) as err:  # TRL's and Trainer's checks of the settings, optional packages
            raise ConfigError(f"trainer settings rejected by TRL: {err}") from None
        if args.compile_generation and self._compiles_decoding(args, loaded):
            generation_config = self.trl_trainer.generation_config
            # TRL 1.15 turns compilation off in its generation config; a static cache is what makes it pay off.
            generation_config.disable_compile = False
            # One cache size for the whole run: transformers otherwise grows the static cache, and recompiles the
            # decoding, each time a round's padded prompts are longer than every round's before.
            generation_config.max_cache_len = static_cache_length(train_dataset, loaded.tokenizer, args)
            logger.info("compiled decoding with a static KV cache of %d tokens", generation_config.max_cache_len)
        return self.trl_trainer

    @staticmethod
    def _compiles_decoding(args, loaded: LoadedModel) -> bool:
        """Whether ``compile_generation`` can act here; if not, say why instead of ignoring it silently."""
        why = None
        quantizer = getattr(loaded.model, "hf_quantizer", None)  # PEFT passes attributes on to the base model
        if loaded.backend != "transformers":
            why = f"the {loaded.backend} backend decodes its own way"
        elif quantizer is not None and not quantizer.is_compileable:
            # transformers' own criterion (GenerationMixin._valid_auto_compile_criteria): it would decode uncompiled
            method = getattr(quantizer.quantization_config.quant_method, "value", "quantized")
            why = f"transformers does not compile the decoding of {method} weights; set load_in_4bit false (bf16)"
        elif args.cache_implementation != "static":
            why = f"cache_implementation is {args.cache_implementation!r}; compiled decoding needs 'static'"
        if why:
            logger.warning("compile_generation is ignored: %s", why)
        return why is None

    def train(
        self, dataset, eval_dataset=None, resume_from_checkpoint: str | None = None, callbacks: list | None = None
    ) -> dict[str, Any]:
        """Run GRPO on ``dataset`` (GRPO schema); returns a summary of steps and rewards."""
        dataset = as_grpo_dataset(dataset, "train", needs_length=False)
        opened_here = self.run_dir is None
        if opened_here:  # called from Python: the output folder is checked and claimed as the CLI does
            self.run_dir = self._open_output_dir(resume_from_checkpoint)
        if self.loaded is None:
            self.load_model()
        resume = resolve_checkpoint(
            resume_from_checkpoint or self.config.resume_from_checkpoint, self.config.output_dir
        )
        check_trains_a_step(len(dataset) if hasattr(dataset, "__len__") else None, self.config, world_size())
        stop = GracefulStop()
        metrics = MetricsLogger(Path(self.config.output_dir))
        own_callbacks = [metrics, stop]
        if resume:
            check_adapter_matches(resume, self.model)
            step = read_trainer_state(resume)["global_step"]
            if is_main_process() and Path(resume).resolve().parent == Path(self.config.output_dir).resolve():
                metrics.continue_from(step)
            own_callbacks.append(ResumeCheck(resume))
            logger.info("resuming from %s (step %d)", resume, step)
        trainer = self.build_trl_trainer(dataset, eval_dataset, [*own_callbacks, *(callbacks or [])])
        prepare_trainer(trainer, self.config)
        started = time.monotonic()
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            stop.install()
        try:
            if resume and completes_its_run(resume, self.config.max_steps):
                # killed after its last checkpoint: that checkpoint is the result (the Trainer would add a step)
                load_adapter(self.loaded, resume)
                trainer.state = type(trainer.state).load_from_json(str(Path(resume) / "trainer_state.json"))
                logger.info("%s is the last step of this run: nothing left to train", resume)
            else:
                trainer.train(resume_from_checkpoint=resume)
        except torch.OutOfMemoryError:
            last = complete_checkpoints(self.config.output_dir)
            raise out_of_memory_error(
                self.config, self.config.load_in_4bit and self.loaded.device == "cuda", str(last[-1]) if last else None
            ) from None
        finally:
            if in_main_thread:
                stop.uninstall()
        summary = summarize_log_history(trainer.state.log_history)
        summary["seconds"] = round(time.monotonic() - started, 1)
        # a stop asked for during the last step ends a complete run
        summary["interrupted"] = stop.requested and trainer.state.global_step < trainer.state.max_steps
        summary["resumed_from"] = resume
        if opened_here:
            close_run(self.run_dir, summary["interrupted"], summary["steps"])
        return summary

    def _open_output_dir(self, resume_from_checkpoint: str | None) -> Path:
        """``output_dir`` checked and claimed for this run: a finished or running run there is refused, not trained
        over (found by a fault hunt: README's Python example overwrote a finished run's adapter and metrics)."""
        config = self.config
        if resume_from_checkpoint is not None:
            config = dataclasses.replace(config, resume_from_checkpoint=resume_from_checkpoint)
        return open_run_dir(decide_run_dir(config, explicit=True))

    def save_model(self, path: str | Path | None = None) -> Path:
        """Save the LoRA adapter and tokenizer (to ``output_dir`` by default)."""
        target = Path(path or self.config.output_dir)
        if self.run_dir is None and path is None and run_dir_state(target) != NEW:
            raise RunDirError(
                f"save_model: {target} holds another run, which is kept as it is; train first (train() claims "
                "output_dir), or save_model(path) to a folder of its own."
            )
        if self.trl_trainer is not None:
            # The Trainer writes on the main process only and gathers ZeRO-3 shards first.
            self.trl_trainer.save_model(str(target))
        else:
            target.mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(target)
            self.tokenizer.save_pretrained(target)
        logger.info("adapter saved to %s", target)
        return target

    # ----------------------------------------------------------------------------------------------
    def generate(
        self, prompts: list[list[dict]] | list[str] | str, do_sample: bool = False, max_new_tokens: int | None = None
    ) -> list[str]:
        """Completions for ``prompts`` (chat message lists; a plain string is one user message), in batches of
        ``per_device_eval_batch_size``."""
        import torch

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)  # a string was cut into characters
        prompts = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens}: generate at least 1 token (None: the config's).")
        loaded = self._require_loaded()
        model, tokenizer = loaded.model, loaded.tokenizer
        if loaded.backend == "unsloth":
            from unsloth import FastLanguageModel

            FastLanguageModel.for_inference(model)
        model.eval()
        tokenizer.padding_side = "left"
        texts: list[str] = []
        batch_size = self.config.per_device_eval_batch_size
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer.apply_chat_template(
                prompts[start : start + batch_size],
                add_generation_prompt=True,
                padding=True,
                return_dict=True,
                return_tensors="pt",
            ).to(model.device)
            with torch.no_grad():
                output = model.generate(
                    **batch,
                    do_sample=do_sample,
                    temperature=self.config.temperature if do_sample else None,
                    top_p=None,
                    top_k=None,
                    max_new_tokens=max_new_tokens if max_new_tokens is not None else self.config.max_completion_length,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            texts.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        if loaded.backend == "unsloth":
            FastLanguageModel.for_training(model)
        return texts

    def evaluate(self, dataset, do_sample: bool = False, write: bool = True) -> dict[str, Any]:
        """Generate for ``dataset``'s prompts and report each reward's mean and spread, plus samples."""
        dataset = as_grpo_dataset(dataset, "evaluate", needs_length=True)
        if self.loaded is None:
            self.load_model()
        started = time.monotonic()
        prompts = list(dataset[PROMPT])
        completions = [[{"role": "assistant", "content": t}] for t in self.generate(prompts, do_sample=do_sample)]
        columns = {k: list(dataset[k]) for k in dataset.column_names if k != PROMPT}
        scores = score_completions(self.reward_functions, completions, {"prompts": prompts, **columns})
        total = weighted_total(scores, self.reward_weights)  # as TRL sums: scores that are None are left out
        results = {
            # what was scored: eval_results.json in a run folder did not say whether it was the run's adapter
            "model": self.config.model_name,
            "adapter": str(self.adapter_dir) if self.adapter_dir is not None else None,
            "num_prompts": len(prompts),
            "greedy": not do_sample,
            "rewards": {name: describe(values) for name, values in {**scores, "reward": total}.items()},
            "seconds": round(time.monotonic() - started, 1),
            # per-prompt scores, in dataset order, for paired comparisons between two evaluations
            "scores": {name: values for name, values in {**scores, "reward": total}.items()},
            "prompts": [p[-1]["content"] for p in prompts],
            "completions": [completion_text(c) for c in completions],
            "samples": [
                {
                    "prompt": prompts[i][-1]["content"],
                    "completion": completion_text(completions[i]),
                    "reference": columns.get(CHOSEN, [""] * len(prompts))[i],
                    "rejected": columns.get(REJECTED, [""] * len(prompts))[i],
                    "rewards": {name: values[i] for name, values in scores.items()},
                }
                for i in range(min(SAMPLES_IN_REPORT, len(prompts)))
            ],
        }
        if write and is_main_process():
            write_eval_results(Path(self.config.output_dir), results)
        return results


def as_grpo_dataset(dataset, purpose: str, needs_length: bool):
    """A caller's data for ``train`` / ``evaluate``: a list of rows becomes a ``datasets.Dataset``; it must hold the
    GRPO schema's ``prompt`` (TRL failed mid-step with ``KeyError: 'prompt'``, or with a TypeError on a list)."""
    from datasets import Dataset, IterableDataset

    if isinstance(dataset, list):
        dataset = Dataset.from_list(dataset)
    columns = getattr(dataset, "column_names", ())
    if not isinstance(dataset, (Dataset, IterableDataset)):
        raise DataError(
            f"{purpose} needs a datasets.Dataset (or a list of rows), got {type(dataset).__name__}; load data with "
            "data_loader.load_grpo_dataset."
        )
    if needs_length and isinstance(dataset, IterableDataset):
        raise DataError(
            f"{purpose} needs rows it can count, not a stream: take some first, "
            "Dataset.from_list(list(stream.take(200)))."
        )
    if columns is not None and PROMPT not in columns:
        raise DataError(
            f"{purpose}: the data has no '{PROMPT}' column (columns: {', '.join(columns) or 'none'}); convert it with "
            "data_loader.load_grpo_dataset, which reads the known formats."
        )
    return dataset


def describe(values: list[float | None]) -> dict[str, float]:
    """Mean, standard deviation and standard error of the mean of the scores present (None: not scored)."""
    values = [v for v in values if v is not None]
    n = len(values)
    mean = statistics.fmean(values) if values else math.nan
    std = statistics.stdev(values) if n > 1 else 0.0
    return {"mean": mean, "std": std, "stderr": std / math.sqrt(n) if n else math.nan, "n": n}


def write_eval_results(run_dir: Path, results: dict[str, Any]) -> Path:
    """``eval_results.json`` in ``run_dir``; an earlier one is kept under a timestamped name."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / EVAL_RESULTS_FILE
    keep_previous(path)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("evaluation written to %s", path)
    return path


def summarize_log_history(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Steps and the mean reward at the start and at the end of training, from TRL's log history."""
    rewards = [entry["reward"] for entry in history if "reward" in entry]
    steps = max((entry.get("step", 0) for entry in history), default=0)
    return {
        "steps": steps,
        "reward_start": rewards[0] if rewards else None,
        "reward_end": rewards[-1] if rewards else None,
        "logged_steps": len(rewards),
    }


def static_cache_length(dataset, tokenizer, config: GRPOConfig) -> int:
    """Prompt plus completion tokens for the longest prompt of ``dataset`` (the prompt budget for a stream)."""
    longest = config.max_prompt_length
    if hasattr(dataset, "__len__") and len(dataset):
        longest = min(longest, max(prompt_token_counts(dataset, tokenizer)))
    return longest + config.max_completion_length
