from litevsr.adapters.base import Adapter, load_adapter, read_adapter_config, save_adapter
from litevsr.adapters.state_aware import StateAwareAdapter

__all__ = ["Adapter", "StateAwareAdapter", "load_adapter", "read_adapter_config", "save_adapter"]
