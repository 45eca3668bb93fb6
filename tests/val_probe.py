"""A callback the multi-process validation tests add (`--trainer.callbacks+=val_probe.ValProbe`, with tests/ on
PYTHONPATH): each rank writes the clip keys and weights of the validation batches it scored and the val/* figures
it ends with into $LITEVSR_PROBE_DIR/val_rank{rank}.json."""

import json
import os

import lightning as L


class ValProbe(L.Callback):
    def __init__(self):
        self.batches, self.metrics = [], {}

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            weights = batch["weight"].tolist() if "weight" in batch else [1.0] * len(batch["key"])
            self.batches.append([list(batch["key"]), weights])

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    def teardown(self, trainer, pl_module, stage):
        path = os.path.join(os.environ["LITEVSR_PROBE_DIR"], f"val_rank{trainer.global_rank}.json")
        with open(path, "w") as f:
            json.dump({"world_size": trainer.world_size, "batches": self.batches, "metrics": self.metrics}, f)
