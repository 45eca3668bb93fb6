from litevsr.adapters.base import Adapter, load_adapter, save_adapter
from litevsr.adapters.state_aware import StateAwareAdapter

__all__ = ["Adapter", "StateAwareAdapter", "load_adapter", "save_adapter"]
