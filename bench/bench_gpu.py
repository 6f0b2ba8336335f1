"""GRPO step benchmark on one GPU: our backends and plain TRL, at one or several generation batches.

    python bench/bench_gpu.py --model-dir /tmp/llama-3.1-8b --row unsloth --points 16,auto,256 --out r.jsonl

Rows (one per process, because Unsloth patches transformers and TRL when imported):

* ``unsloth`` / ``unsloth_bf16``: this project's GRPOTrainer, Unsloth backend, 4-bit / bf16 LoRA;
* ``transformers_4bit`` / ``transformers_bf16``: this project's GRPOTrainer, transformers backend
  (bitsandbytes 4-bit / bf16) + PEFT LoRA;
* ``trl_bf16``: plain ``trl.GRPOTrainer`` on the bf16 model with a PEFT ``LoraConfig``, as TRL's docs show.

Points (``--points``, comma-separated, measured one after another on the model loaded once): a generation
batch (TRL's ``generation_batch_size``, completions per round), ``default`` (TRL's: the optimizer batch) or
``auto`` (``memory.generation_batch_for``, our default); suffixes ``:w0`` (no warm-up round, for points
after the first), ``:nographs`` (Unsloth's CUDA-graph decoding off), ``:compile`` (transformers' compiled
static-cache decoding: for our rows the ``compile_generation`` option with a static cache, on any weights),
``:unfolded`` (the LM head as Unsloth calls it, without ``unsloth_decode.fold_rows_into_one_matrix``),
``:qkvstrided`` (Unsloth's decode projections as it calls them, without ``unsloth_decode.foldable_rows``),
``:syncstop`` (transformers' decoding loop waiting for the GPU after every step, as it does on CUDA, instead of
``models.defer_stop_check_on_cuda``),
``:sdpaattn`` (the decode attention as rows through SDPA's front end, as the eighth session had it, instead of
straight to the memory-efficient kernel with the step's bias made once),
``:gqamath`` (Unsloth's decode attention as it ships, without ``unsloth_decode.groups_as_rows``: SDPA's math
kernel),
``:profile`` (the first ``generate`` call after warm-up runs under ``torch.profiler``: where a decode step's time
goes, as tables next to ``--out``; the profiler slows that round, so a profiled point's timings are not figures),
``:cprofile`` (the same round under Python's ``cProfile`` instead: where the host's time goes),
Every point uses the same prompts (built-in arithmetic), G, completion length, optimizer batch, LoRA rank and a
cheap length reward.  One generation round feeds ``generation_batch / batch`` optimizer steps, so whole rounds
are timed: one warm-up round, then at least ``--steps`` steps.

Reported per point: seconds per optimizer step, completion tokens/s with its spread over timed rounds (or
steps), where the time goes (``generate``; rewards and log-probabilities of the rollout; forward, backward and
optimizer), milliseconds per decode step and its ratio to the memory-bandwidth floor (weights plus the
mean KV cache read once per step), and peak GPU memory since the point started (weights included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
HBM_BYTES_PER_S = {"H100": 3.35e12, "H200": 4.8e12}  # vendor datasheets (SXM)
OURS = {
    "unsloth": ("unsloth", True),
    "unsloth_bf16": ("unsloth", False),
    "transformers_4bit": ("transformers", True),
    "transformers_bf16": ("transformers", False),
}


@dataclass
class Point:
    generation_batch: str  # a number, "default" or "auto"
    warmup_rounds: int = 1
    graphs: bool = True
    compile: bool = False
    profile: bool = False
    fold: bool = True
    fold_projections: bool = True
    rows_attention: bool = True
    direct_attention: bool = True
    deferred_stop: bool = True
    cprofile: bool = False

    @classmethod
    def parse(cls, spec: str) -> Point:
        name, *flags = spec.split(":")
        point = cls(name)
        for flag in flags:
            if flag == "w0":
                point.warmup_rounds = 0
            elif flag == "unfolded":
                point.fold = False
            elif flag == "gqamath":
                point.rows_attention = False
            elif flag == "qkvstrided":
                point.fold_projections = False
            elif flag == "syncstop":
                point.deferred_stop = False
            elif flag == "sdpaattn":
                point.direct_attention = False
            elif flag == "cprofile":
                point.profile, point.cprofile = True, True
            elif flag in ("nographs", "compile", "profile"):
                setattr(point, "graphs" if flag == "nographs" else flag, flag != "nographs")
            else:
                raise SystemExit(f"unknown point flag {flag!r} in {spec!r}")
        return point


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Stopwatch:
    """Sums the wall time (CUDA-synchronised) of the calls it wraps."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, inner):
        def timed(*args, **kwargs):
            synchronize()
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                synchronize()
                self.seconds += time.perf_counter() - started

        return timed


class Probe:
    """What one point measures: ``generate`` and the whole rollout (generation, rewards, old log-probs), and
    the peak memory inside ``generate`` apart from the rest of the step (which of the two sets the point's peak)."""

    def __init__(self):
        self.generate = Stopwatch()
        self.rollout = Stopwatch()
        self.compile_decode = False
        self.records: list[dict] = []
        self.model = None
        self.reset(profile_call=None, profile_path=None)

    def reset(self, profile_call: int | None, profile_path: Path | None, python: bool = False) -> None:
        """Start a point: ``generate`` call number ``profile_call`` (0-based) is profiled into ``profile_path``
        (by ``cProfile`` where ``python``, else by ``torch.profiler``)."""
        self.records, self.generate_calls, self.peaks = [], 0, {"generate": 0, "other": 0}
        self.profile_call, self.profile_path = profile_call, profile_path
        self.profiler = python_profiled if python else profiled

    def watched(self, inner):
        """``generate`` with its peak memory kept apart, and profiled once if the point asks."""

        def call(*args, **kwargs):
            import torch

            cuda = torch.cuda.is_available()
            if cuda:
                self.peaks["other"] = max(self.peaks["other"], torch.cuda.max_memory_allocated())
                torch.cuda.reset_peak_memory_stats()
            number, self.generate_calls = self.generate_calls, self.generate_calls + 1
            try:
                if number == self.profile_call:
                    return self.profiler(inner, self.profile_path, *args, **kwargs)
                return inner(*args, **kwargs)
            finally:
                if cuda:
                    self.peaks["generate"] = max(self.peaks["generate"], torch.cuda.max_memory_allocated())
                    torch.cuda.reset_peak_memory_stats()

        return call

    def instrument(self, model) -> None:
        """Time ``model.generate`` (instance, once) and the rollout of whichever ``trl.GRPOTrainer`` class runs."""
        import trl

        if self.model is not model:
            model.generate = self.generate.wrap(self.watched(model.generate))
            self.model = model
        cls = trl.GRPOTrainer
        if not getattr(cls, "_bench_probe", None):
            inner = cls._generate_and_score_completions

            def rollout(trainer, *args, **kwargs):
                probe = type(trainer)._bench_probe
                if probe.compile_decode and not getattr(trainer.args, "compile_generation", False):
                    trainer.generation_config.disable_compile = False  # plain TRL: TRL turns compilation off
                return probe.rollout.wrap(inner)(trainer, *args, **kwargs)

            cls._generate_and_score_completions = rollout
        cls._bench_probe = self

    def callback(self):
        from transformers import TrainerCallback

        probe = self

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                synchronize()
                self.started = time.perf_counter()
                self.before = (probe.generate.seconds, probe.rollout.seconds)

            def on_step_end(self, args, state, control, **kwargs):
                synchronize()
                probe.records.append(
                    {
                        "step": state.global_step,
                        "seconds": time.perf_counter() - self.started,
                        "generate": probe.generate.seconds - self.before[0],
                        "rollout": probe.rollout.seconds - self.before[1],
                    }
                )

        return StepTimer()


def profiled(inner, path: Path, *args, **kwargs):
    """Run ``inner`` under ``torch.profiler`` and write where its time went: wall time against the GPU's busy
    time (kernels), then the operators by GPU time, by CPU time and by input shapes, to ``path``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    synchronize()
    started = time.perf_counter()
    with profile(activities=activities, record_shapes=True) as prof:
        result = inner(*args, **kwargs)
        synchronize()
    wall = time.perf_counter() - started
    events = prof.key_averages()
    device_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
    ids = getattr(result, "sequences", result)
    new_tokens = ids.shape[-1] - kwargs["input_ids"].shape[-1] if "input_ids" in kwargs else -1
    lines = [
        f"generate under the profiler: {wall:.2f} s wall, {device_us / 1e6:.2f} s of kernels summed "
        f"({100 * device_us / 1e6 / wall:.0f}% of wall), batch {ids.shape[0]}, {new_tokens} new tokens, "
        f"{1000 * wall / max(new_tokens, 1):.1f} ms per decode step (profiled)",
        "",
        events.table(sort_by="self_device_time_total", row_limit=40, max_name_column_width=90),
        events.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=90),
        "operators by input shapes (kernels launched outside CUDA graphs are charged to their operator):",
        prof.key_averages(group_by_input_shape=True).table(
            sort_by="device_time_total", row_limit=40, max_name_column_width=60, max_shapes_column_width=120
        ),
    ]
    path.write_text("\n".join(lines))
    print(lines[0], "->", path, flush=True)
    return result


def python_profiled(inner, path: Path, *args, **kwargs):
    """Run ``inner`` under ``cProfile`` and write the functions by own time and by cumulative time to ``path``:
    where the host spends a decode step (the GPU runs ahead except where something waits for it)."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    synchronize()
    started = time.perf_counter()
    result = profiler.runcall(inner, *args, **kwargs)
    synchronize()
    wall = time.perf_counter() - started
    ids = getattr(result, "sequences", result)
    new_tokens = ids.shape[-1] - kwargs["input_ids"].shape[-1] if "input_ids" in kwargs else -1
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(50)
    stats.sort_stats("cumulative").print_stats(60)
    header = (
        f"generate under cProfile: {wall:.2f} s wall, batch {ids.shape[0]}, {new_tokens} new tokens, "
        f"{1000 * wall / max(new_tokens, 1):.1f} ms per decode step (profiled)"
    )
    path.write_text(header + "\n" + stream.getvalue())
    print(header, "->", path, flush=True)
    return result


def unsloth_as_shipped(home: str, name: str, wrapper: str, bound_as: str | None = None) -> None:
    """Undo one of ``unsloth_decode``'s patches in this process: Unsloth's ``home.name`` back where the
    wrapper (kept as ``home.wrapper``) was bound (point flags ``:gqamath``, ``:qkvstrided``)."""
    module = sys.modules[home]
    for name_, model_module in list(sys.modules.items()):
        bound = bound_as or name
        if name_.startswith("unsloth.models") and getattr(model_module, bound, None) is getattr(module, wrapper):
            setattr(model_module, bound, getattr(module, name))


def length_reward(completions, **kwargs):
    return [min(len(c[0]["content"] if isinstance(c, list) else c), 200) / 200 for c in completions]


def dataset(rows: int, padding: int = 0):
    """Built-in arithmetic prompts; with ``padding`` each prompt gets 0..padding filler sentences first, so
    prompt lengths (and the KV-cache length a round needs) vary from round to round as in real data."""
    import random

    from datasets import Dataset

    from data_loader import PROMPT, make_arithmetic_rows

    rows = make_arithmetic_rows(rows, seed=0)
    rng = random.Random(1)
    for row in rows:
        filler = "Read the question carefully. " * rng.randint(0, padding)
        row[PROMPT][-1]["content"] = filler + row[PROMPT][-1]["content"]
    return Dataset.from_list(rows)


def settings(args, generation_batch: int | None, max_steps: int, point: Point) -> dict:
    """The run's settings, in the keys a config file takes (TRL's names; ``group_size`` is the seed's alias)."""
    values = {
        "per_device_train_batch_size": args.batch,
        "gradient_accumulation_steps": 1,
        "max_completion_length": args.completion_length,
        "learning_rate": 1e-5,
        "max_steps": max_steps,
        "save_steps": 10_000,
        "report_to": [],
        "logging_steps": 1,
        "log_completions": False,
        **args.trl_extra,
    }
    if generation_batch is not None:
        values["generation_batch_size"] = generation_batch
    return values


def ours_config(args, generation_batch: int | None, max_steps: int, point: Point):
    """Our GRPOConfig through the config-file path (the same keys a user's JSON file holds)."""
    from config import load_config_from_file

    backend, four_bit = OURS[args.row]
    values = {
        "model_name": str(args.model_dir),
        "backend": backend,
        "load_in_4bit": four_bit,
        "max_seq_length": args.completion_length + 256,
        "group_size": args.generations,
        "lora_rank": args.lora_rank,
        "use_wandb": False,
        # one folder per row and point: rows side by side on one host must not share a run folder
        "output_dir": str(args.work_dir / f"{args.label or args.row}-{point.generation_batch}"),
        **settings(args, generation_batch, max_steps, point),
    }
    if point.compile:  # the product's option (grpo_trainer: one static cache size for the run), on any weights
        values.update(compile_generation=True, cache_implementation="static")
    path = args.work_dir / "bench_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    return load_config_from_file(path)


def resolve_batch(args, point: Point) -> tuple[int | None, str]:
    """The point's generation batch (None: TRL's default) and where it came from."""
    if point.generation_batch == "default":
        return None, "TRL default (the optimizer batch)"
    if point.generation_batch != "auto":
        return int(point.generation_batch), "given"
    from memory import generation_batch_for

    config = ours_config(args, None, 1, point)
    return generation_batch_for(config, str(args.model_dir), four_bit=OURS.get(args.row, ("", False))[1])


class OursRunner:
    """Our GRPOTrainer, the model loaded once and reused by every point."""

    def __init__(self, args):
        self.args, self.loaded, self.probe = args, None, Probe()

    def run(self, point: Point, generation_batch: int | None, max_steps: int):
        from grpo_trainer import GRPOTrainer

        trainer = GRPOTrainer(
            ours_config(self.args, generation_batch, max_steps, point),
            reward_functions=[length_reward],
            reward_weights=[1.0],
        )
        if self.loaded is None:
            trainer.load_model()
            self.loaded = trainer.loaded
        trainer.loaded = self.loaded
        if not point.fold:  # back to the head's own forward (the fold is an attribute of the instance)
            self.loaded.model.get_output_embeddings().__dict__.pop("forward", None)
        if not point.rows_attention:
            unsloth_as_shipped(
                "unsloth.utils.attention_dispatch",
                "decode_scaled_dot_product_attention",
                "_grpo_groups_as_rows",
                bound_as="scaled_dot_product_attention",
            )
        if not point.fold_projections:
            unsloth_as_shipped("unsloth.kernels.utils", "fast_linear_forward", "_grpo_foldable_rows")
        # These flags (and :gqamath, :qkvstrided above) change the process for good, not undone after the point:
        # give such a point its own process (bench/gpu_rollout.sh runs one row per process).
        if not point.deferred_stop:  # transformers' own decision: the host waits for every step on CUDA
            from transformers.generation.utils import DeferredStopCheck

            DeferredStopCheck.is_supported = staticmethod(DeferredStopCheck._grpo_shipped_is_supported)
        if not point.direct_attention:
            sys.modules["unsloth.utils.attention_dispatch"]._grpo_groups_as_rows.step_bias.direct = False
        self.probe.instrument(trainer.model)
        trainer.train(dataset(512, self.args.prompt_padding), callbacks=[self.probe.callback()])
        return trainer.trl_trainer


class PlainTRLRunner:
    """Plain ``trl.GRPOTrainer`` on the bf16 model with a PEFT ``LoraConfig``, as TRL's documentation shows it;
    later points reuse the first point's model."""

    def __init__(self, args):
        self.args, self.model, self.probe = args, None, Probe()

    def run(self, point: Point, generation_batch: int | None, max_steps: int):
        import torch
        from peft import LoraConfig
        from trl import GRPOConfig, GRPOTrainer

        args = self.args
        cuda = torch.cuda.is_available()
        if not cuda:  # a CPU dry run of this script: TRL's fused log-prob kernel needs CUDA
            from cpu_support import use_torch_logprob_kernel

            use_torch_logprob_kernel()
        values = settings(args, generation_batch, max_steps, point)
        values.pop("save_steps")
        training_args = GRPOConfig(
            output_dir=str(args.work_dir / f"{args.label or args.row}-{point.generation_batch}"),
            num_generations=args.generations,
            bf16=cuda,
            use_cpu=not cuda,
            save_strategy="no",
            model_init_kwargs={"dtype": torch.bfloat16 if cuda else torch.float32},
            **values,
        )
        lora = LoraConfig(
            r=args.lora_rank, lora_alpha=2 * args.lora_rank, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
        )
        trainer = GRPOTrainer(
            model=self.model or str(args.model_dir),
            reward_funcs=length_reward,
            args=training_args,
            train_dataset=dataset(512, self.args.prompt_padding),
            peft_config=None if self.model else lora,
            callbacks=[self.probe.callback()],
        )
        self.model = trainer.model
        self.probe.instrument(trainer.model)
        trainer.train()
        return trainer


def floor_ms(args, generation_batch: int, four_bit: bool, prompt_tokens: float) -> float:
    """Memory-bandwidth floor of one decode step: all weights plus the mean KV cache, read once."""
    import torch
    from transformers import AutoConfig

    from config import GRPOConfig
    from memory import estimate

    model_config = AutoConfig.from_pretrained(args.model_dir)
    weights = estimate(GRPOConfig(), model_config, four_bit).weights
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    kv_per_token = model_config.num_hidden_layers * 2 * model_config.num_key_value_heads * head_dim * 2
    kv = kv_per_token * generation_batch * (prompt_tokens + args.completion_length / 2)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    bandwidth = next((v for k, v in HBM_BYTES_PER_S.items() if k in name), HBM_BYTES_PER_S["H100"])
    return 1000 * (weights + kv) / bandwidth


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 1), "median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def summarize(args, point: Point, batch: int, reason: str, trainer, probe: Probe, warmup_steps: int) -> dict:
    """One result line for a point: whole timed rounds only (``complete`` false when the run stopped early)."""
    import torch

    if torch.cuda.is_available():
        probe.peaks["other"] = max(probe.peaks["other"], torch.cuda.max_memory_allocated())

    per_round = batch // args.batch
    expected = per_round * math.ceil(args.steps / per_round)
    # TRL logs completion lengths once per generation round (over the whole generation batch).
    lengths = [e["completions/mean_length"] for e in trainer.state.log_history if "completions/mean_length" in e]
    timed = probe.records[warmup_steps:]
    rounds = [timed[i : i + per_round] for i in range(0, len(timed), per_round)]
    round_tokens = [batch * length for length in lengths[warmup_steps // per_round :]]
    round_seconds = [sum(r["seconds"] for r in chunk) for chunk in rounds]
    seconds = sum(round_seconds)
    tokens = sum(round_tokens)
    total = {key: sum(r[key] for r in timed) for key in ("generate", "rollout")}
    mean_length = tokens / (batch * len(rounds))
    ms_decode = 1000 * total["generate"] / len(rounds) / max(mean_length, 1)
    four_bit = OURS.get(args.row, ("", False))[1]
    floor = floor_ms(args, batch, four_bit, prompt_tokens=float(os.environ.get("BENCH_PROMPT_TOKENS", 60)))
    return {
        "row": args.label or args.row,
        "point": point.__dict__,
        "generation_batch": batch,
        "generation_batch_reason": reason,
        "complete": len(timed) == expected,
        "model": args.model_dir.name,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "settings": {
            "G": args.generations,
            "batch": args.batch,
            "completion_length": args.completion_length,
            "lora_rank": args.lora_rank,
            "prompt_padding": args.prompt_padding,
            "timed_steps": len(timed),
            "timed_rounds": len(rounds),
            **args.trl_extra,
        },
        "step_s": round(seconds / len(timed), 2),
        "completion_tokens_per_s": round(tokens / seconds, 1),
        "tokens_per_s_spread": spread([t / s for t, s in zip(round_tokens, round_seconds, strict=True)]),
        "mean_completion_length": round(mean_length, 1),
        "time_share": {
            "generate": round(total["generate"] / seconds, 3),
            "rewards_and_logprobs": round((total["rollout"] - total["generate"]) / seconds, 3),
            "forward_backward_optimizer": round((seconds - total["rollout"]) / seconds, 3),
        },
        "ms_per_decode_step": round(ms_decode, 2),
        "floor_ms": round(floor, 2),
        "ratio_to_floor": round(ms_decode / floor, 1),
        "peak_allocated_gib": round(max(probe.peaks.values()) / 2**30, 2),
        "peak_gib_by_phase": {k: round(v / 2**30, 2) for k, v in probe.peaks.items()},
        "profiled": point.profile,
        "steps": timed,
    }


def run_point(args, runner, point: Point) -> dict:
    import torch

    batch, reason = resolve_batch(args, point)
    per_round = (batch or args.batch) // args.batch
    timed_rounds = math.ceil(args.steps / per_round)
    warmup_steps = point.warmup_rounds * per_round
    os.environ["UNSLOTH_DECODE_CUDA_GRAPHS"] = "" if point.graphs else "0"
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    runner.probe.compile_decode = point.compile
    label = f"{args.label or args.row}-{point.generation_batch}"
    profile_path = args.out.parent / f"{'cprofile' if point.cprofile else 'profile'}-{label}.txt"
    runner.probe.reset(point.warmup_rounds if point.profile else None, profile_path, python=point.cprofile)
    trainer = runner.run(point, batch, warmup_steps + timed_rounds * per_round)
    return summarize(args, point, batch or args.batch, reason, trainer, runner.probe, warmup_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--row", choices=[*OURS, "trl_bf16"], required=True)
    parser.add_argument("--label", help="name of the row in the results (default: --row)")
    parser.add_argument("--points", default="default", help="generation batches, e.g. default,auto,64:w0")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per point, at least")
    parser.add_argument("--batch", type=int, default=16, help="completions per optimizer step (prompts x G)")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--completion-length", type=int, default=256)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--trl-json", default="{}", help="extra trl.GRPOConfig fields as JSON")
    parser.add_argument("--prompt-padding", type=int, default=0, help="vary prompt lengths by 0..N sentences")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/grpo-bench"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.trl_extra = json.loads(args.trl_json)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "disabled")
    from config_base import import_unsloth_first

    # The row's backend decides the import before anything imports transformers or TRL, as in the CLI (``import
    # config`` alone would import Unsloth on a GPU host, and its patched TRL trainer refuses plain PEFT models).
    import_unsloth_first(OURS.get(args.row, ("transformers",))[0])

    runner = PlainTRLRunner(args) if args.row == "trl_bf16" else OursRunner(args)
    for spec in args.points.split(","):
        started = time.perf_counter()
        result = run_point(args, runner, Point.parse(spec))
        result["total_s"] = round(time.perf_counter() - started, 1)
        with args.out.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "steps"}), flush=True)


if __name__ == "__main__":
    main()
