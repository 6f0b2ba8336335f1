"""On PYTHONPATH for tests that launch FSDP runs on CPU processes: accelerate turns FSDP on only for GPU-like
devices, so a CPU process group with an FSDP plugin is made an FSDP state here; the rest is accelerate's, torch's
and transformers' own code over gloo."""

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_with_cpu_fsdp(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does on GPUs


AcceleratorState.__init__ = _init_with_cpu_fsdp
