"""A callback the multi-process tests add to a fit (`--trainer.callbacks+=ddp_probe.Probe`, with tests/ on
PYTHONPATH): each rank writes the clip keys it trained on and its adapter weights (whole, under FSDP too) into
$LITEVSR_PROBE_DIR."""

import json
import os

import lightning as L
from safetensors.torch import save_file


def _full(tensor):
    """The whole tensor, where FSDP holds a shard on each rank (an all-gather every rank joins)."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


class Probe(L.Callback):
    def __init__(self):
        self.keys = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.keys.append([trainer.current_epoch, list(batch["key"])])

    def on_train_end(self, trainer, pl_module):
        folder, rank = os.environ["LITEVSR_PROBE_DIR"], trainer.global_rank
        state = {k: _full(v).detach().float().cpu().contiguous() for k, v in pl_module.adapter.state_dict().items()}
        save_file(state, os.path.join(folder, f"adapter_rank{rank}.safetensors"))
        with open(os.path.join(folder, f"keys_rank{rank}.json"), "w") as f:
            json.dump({"world_size": trainer.world_size, "batches": self.keys}, f)
