"""benchmarks/compare_adapters.py at CI size: every method through the same harness, a table, the JSON and a plot."""

import json
import os
import subprocess
import sys

BENCHMARK = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "compare_adapters.py")


def test_compare_adapters_runs_every_method_in_one_harness(tmp_path):
    name = str(tmp_path / "compare")
    methods = "state_aware,sigma_independent,lora,controlnet,full"
    subprocess.run([sys.executable, BENCHMARK, "--size", "tiny", "--steps", "1", "--methods", methods, "--name", name],
                   check=True, capture_output=True, text=True)
    result = json.load(open(f"{name}.json"))
    rows = {r["name"]: r for r in result["methods"]}
    assert list(rows) == methods.split(",")
    for row in rows.values():
        assert row["trainable_params"] > 0 and row["step_seconds"] > 0 and row["peak_memory_mib"] > 0
        assert {"psnr_y", "psnr_y_std", "ssim_y"} <= set(row)
    assert rows["full"]["trainable_params"] > rows["controlnet"]["trainable_params"] > rows["lora"]["trainable_params"]
    real = {(r["backbone"], r["method"]): r for r in result["real_shapes"]}
    wan13 = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert real[wan13, "full"]["share_of_transformer"] >= 1.0
    assert real[wan13, "state_aware"]["trainable_params"] * 4 <= real[wan13, "controlnet"]["trainable_params"]
    assert os.path.getsize(f"{name}_step_time.png") > 0
