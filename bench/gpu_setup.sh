# Sourced by the GPU scripts: install the carried wheelhouse (.whl, from shared/gpu/make_wheelhouse.sh) into
# /tmp/site and set an offline environment.  The GPU host already has torch, transformers, peft, accelerate.
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, peft, unsloth, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'unsloth', unsloth.__version__, 'bnb', bitsandbytes.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
