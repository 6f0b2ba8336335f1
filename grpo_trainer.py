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
from data_loader import (
    CHOSEN,
    PROMPT,
    REJECTED,
    RENAMED_COLUMN_PREFIX,
    RESERVED_COLUMNS,
    DataError,
    checked_prompt,
    dataset_from_rows,
    prompt_token_counts,
)
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


def _scores_with_a_reward_model(reward_functions) -> bool:
    """Whether rewards given to GRPOTrainer include a reward model's score (the CLI passes the config's own, built by
    ``build_rewards``, which does: warning that the config's reward_model went unused was wrong there)."""
    from reward_model import REWARD_FUNCTION_NAME

    if reward_functions is None:
        return True  # the config's rewards are built from it, reward model included
    if not isinstance(reward_functions, (list, tuple)):
        return False  # guard_rewards refuses it
    return any(getattr(function, "__name__", None) == REWARD_FUNCTION_NAME for function in reward_functions)


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
        _check_lists(reward_weights=reward_weights)  # (guard_rewards checks reward_functions)
        if config.reward_model and not _scores_with_a_reward_model(reward_functions):  # dropped without a word
            logger.warning(
                "reward_model %s is not used: the reward_functions given to GRPOTrainer are the rewards (add "
                "reward_model.get_reward_model_reward(path) to them to score with it).",
                config.reward_model,
            )
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
        self._trained = False  # train() runs once per trainer

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
        """Run GRPO on ``dataset`` (GRPO schema); returns a summary of steps and rewards. Once per trainer.

        Everything that can be checked is checked before the model is loaded and the output folder claimed (a
        wrong weight count found after minutes of loading left the folder marked as a run: fault hunt)."""
        if self._trained:  # a second call trained into its own finished run, logging step 1 again (fault hunt)
            raise RunDirError(
                f"this GRPOTrainer already trained a run in {self.config.output_dir}; build a new GRPOTrainer for "
                "another run (with an output_dir of its own), or to continue this one pass "
                "resume_from_checkpoint='latest' to a new trainer."
            )
        _check_callbacks(callbacks)
        dataset = as_grpo_dataset(dataset, "train", needs_length=False)
        if eval_dataset is not None:
            eval_dataset = as_grpo_dataset(eval_dataset, "eval_dataset", needs_length=False)
        check_trains_a_step(len(dataset) if hasattr(dataset, "__len__") else None, self.config, world_size())
        self._check_reward_weights()
        opened_here = self.run_dir is None
        plan = self._plan_output_dir(resume_from_checkpoint) if opened_here else None
        if self.loaded is None:
            self.load_model()
        if opened_here:  # called from Python: the output folder is checked and claimed as the CLI does
            self.run_dir = open_run_dir(plan)
        try:
            summary = self._train(dataset, eval_dataset, resume_from_checkpoint, callbacks)
        except BaseException:
            if opened_here:  # marked as stopped (resumable from a checkpoint, if any) and no longer this object's
                close_run(self.run_dir, interrupted=True, steps=0)
                self.run_dir = None
            raise
        self._trained = True
        if opened_here:
            close_run(self.run_dir, summary["interrupted"], summary["steps"])
        return summary

    def _train(self, dataset, eval_dataset, resume_from_checkpoint: str | None, callbacks: list | None):
        resume = resolve_checkpoint(
            resume_from_checkpoint or self.config.resume_from_checkpoint, self.config.output_dir
        )
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
        return summary

    def _plan_output_dir(self, resume_from_checkpoint: str | None):
        """What this run does with ``output_dir``: a finished or running run there is refused, not trained over
        (found by a fault hunt: README's Python example overwrote a finished run's adapter and metrics)."""
        config = self.config
        if resume_from_checkpoint is not None:
            config = dataclasses.replace(config, resume_from_checkpoint=resume_from_checkpoint)
        return decide_run_dir(config, explicit=True)

    def _check_reward_weights(self) -> None:
        """One finite weight per reward (TRL found a wrong count only after the model was loaded)."""
        weights, count = self.reward_weights, len(self.reward_functions)
        if not count:
            raise ConfigError(
                "no reward functions: give reward_functions (names or functions) or a reward_model to score with."
            )
        if len(weights) != count or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in weights
        ):
            names = ", ".join(fn.__name__ for fn in self.reward_functions)
            raise ConfigError(
                f"reward_weights {weights} for {count} reward(s) ({names}): give one finite number per reward, in "
                "that order."
            )

    def _evaluates_that_run(self, run_dir: Path) -> bool:
        """Whether the adapter loaded is ``run_dir``'s (its final adapter or one of its checkpoints)."""
        if self.adapter_dir is None:
            return False
        adapter = Path(self.adapter_dir).resolve()
        return run_dir.resolve() in (adapter, adapter.parent)

    def _writes_into_another_run(self, target: Path) -> bool:
        """Whether writing into ``target`` would change a run this object does not own."""
        if self.run_dir is not None and target.resolve() == Path(self.run_dir).resolve():
            return False
        return run_dir_state(target) != NEW

    def save_model(self, path: str | Path | None = None) -> Path:
        """Save the LoRA adapter and tokenizer (to ``output_dir`` by default)."""
        target = Path(path or self.config.output_dir)
        if target.exists() and not target.is_dir():  # a FileExistsError from inside (fourth hunt)
            raise RunDirError(f"save_model: {target} is a file; give a folder for the adapter.")
        if self._writes_into_another_run(target):  # with a path too: another run's adapter was replaced (hunt)
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

        if not isinstance(prompts, (str, list, tuple)):  # None was a TypeError; a dict was read key by key
            raise DataError(f"generate needs a prompt or a list of prompts, got {type(prompts).__name__}.")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)  # a string was cut into characters
        prompts = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
        _check_prompts(prompts, "generate")  # [1, 2] gave one completion for two prompts
        number = isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool)
        if max_new_tokens is not None and not (number and max_new_tokens >= 1):
            raise ConfigError(f"max_new_tokens={max_new_tokens!r}: generate at least 1 token (None: the config's).")
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
        output_dir = Path(self.config.output_dir)
        if write and self._writes_into_another_run(output_dir) and not self._evaluates_that_run(output_dir):
            # the base model's results replaced a finished run's eval_results.json (fault hunt)
            raise RunDirError(
                f"evaluate: {output_dir} holds another run, and this trainer has not loaded its adapter; "
                f"load_model(adapter_dir='{output_dir}') to score that run, evaluate(..., write=False), or give "
                "output_dir a folder of its own."
            )
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
            "prompts": [_prompt_text(p) for p in prompts],
            "completions": [completion_text(c) for c in completions],
            "samples": [
                {
                    "prompt": _prompt_text(prompts[i]),
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


def _check_callbacks(callbacks) -> None:
    """transformers' callbacks: instances or classes of ``TrainerCallback`` (an object failed inside transformers)."""
    from transformers import TrainerCallback

    _check_lists(callbacks=callbacks)
    for index, callback in enumerate(callbacks or ()):
        is_class = isinstance(callback, type) and issubclass(callback, TrainerCallback)
        if not (is_class or isinstance(callback, TrainerCallback)):
            raise ConfigError(
                f"callbacks[{index}] is {type(callback).__name__}; give transformers.TrainerCallback instances or "
                "classes."
            )


def _check_lists(**arguments) -> None:
    """Arguments that take a list: a single function was "not iterable", a string was read letter by letter."""
    for name, value in arguments.items():
        if value is not None and not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {type(value).__name__}; e.g. {name}=[...].")


def _prompt_text(prompt) -> str:
    """The text of a prompt: itself, or its last (user) message."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def as_grpo_dataset(dataset, purpose: str, needs_length: bool):
    """A caller's data for ``train`` / ``evaluate``: a list of rows becomes a ``datasets.Dataset``; it must hold the
    GRPO schema's ``prompt`` (TRL failed mid-step with ``KeyError: 'prompt'``, or with a TypeError on a list)."""
    from datasets import Dataset, IterableDataset

    if isinstance(dataset, list):
        if not all(isinstance(row, dict) for row in dataset):  # ["hi"] was an AttributeError inside datasets
            raise DataError(f"{purpose}: a list of rows needs dicts, e.g. {{'prompt': 'What is 2+2?'}}.")
        dataset = dataset_from_rows([(f"{purpose}: row {i}", row) for i, row in enumerate(dataset)])
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
    if isinstance(dataset, Dataset):
        if needs_length and len(dataset) == 0:  # eval_results.json got NaN means (fault hunt)
            raise DataError(f"{purpose}: the data has no rows.")
        _check_prompts(dataset[PROMPT], purpose)
    clashes = [c for c in columns or () if c in RESERVED_COLUMNS]
    if clashes:  # "got multiple values for keyword argument 'prompts'" in TRL's first step, or silently replaced
        logger.info(
            "%s: columns %s renamed %s* (TRL passes reward arguments of those names)",
            purpose,
            clashes,
            RENAMED_COLUMN_PREFIX,
        )
        dataset = dataset.rename_columns({c: RENAMED_COLUMN_PREFIX + c for c in clashes})
    return dataset


def _check_prompts(prompts, purpose: str) -> None:
    """Each prompt is text or a chat ending with a user turn: None, numbers, [] and a reply at the end failed
    inside TRL's first step after the model was loaded, or trained on the reply (fault hunt)."""
    for index, prompt in enumerate(prompts):
        try:
            checked_prompt(prompt)  # the loader's own rule for a converted row's prompt
        except DataError as err:
            raise DataError(
                f"{purpose}: row {index}'s prompt is {prompt!r:.80} ({err}); give text, or chat messages ending with a "
                "user turn (data_loader.load_grpo_dataset converts conversations and the known formats)."
            ) from None


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
