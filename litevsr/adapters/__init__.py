from litevsr.adapters.base import (
    Adapter,
    load_adapter,
    load_adapter_weights,
    read_adapter_config,
    register_adapter,
    save_adapter,
)
from litevsr.adapters.concat import FullFinetuneAdapter, LoRAAdapter
from litevsr.adapters.controlnet import ControlNetAdapter
from litevsr.adapters.state_aware import StateAwareAdapter

__all__ = [
    "Adapter",
    "ControlNetAdapter",
    "FullFinetuneAdapter",
    "LoRAAdapter",
    "StateAwareAdapter",
    "load_adapter",
    "load_adapter_weights",
    "read_adapter_config",
    "register_adapter",
    "save_adapter",
]
