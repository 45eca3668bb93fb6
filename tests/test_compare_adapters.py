"""benchmarks/compare_adapters.py at CI size: every method through the same harness, a table, the JSON and a plot."""

import json
import os
import subprocess
import sys

import pytest

BENCHMARK = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "compare_adapters.py")


def test_compare_adapters_runs_every_method_in_one_harness(tmp_path):
    name = str(tmp_path / "compare")
    methods = "state_aware,sigma_independent,lora,controlnet,full"
    subprocess.run(
        [sys.executable, BENCHMARK, "--size", "tiny", "--steps", "1", "--methods", methods, "--name", name],
        check=True,
        capture_output=True,
        text=True,
    )
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
    again = str(tmp_path / "again")  # re-scoring without re-timing
    subprocess.run(
        [
            sys.executable,
            BENCHMARK,
            "--size",
            "tiny",
            "--methods",
            "lora,full",
            "--name",
            again,
            "--reuse",
            f"{name}.json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    reused = {r["name"]: r for r in json.load(open(f"{again}.json"))["methods"]}
    assert all(reused[m]["step_seconds"] == rows[m]["step_seconds"] for m in ("lora", "full"))


def test_quality_after_an_equal_budget_trains_each_method_by_its_recipe(tmp_path, backbone_dir, shard_dirs):
    """--quality-steps: each method fits by the same recipe (plus its piece), then is scored on held-out clips with
    bicubic and the bare generator as floors."""
    from conftest import random_clips
    from test_training import write_config

    from litevsr.data.video import encode_video
    from litevsr.frames import frames_to_video, resize_video, video_to_frames

    heldout = tmp_path / "heldout"
    for folder in ("gt", "lq_bicubic"):
        (heldout / folder).mkdir(parents=True)
    for key, frames, _ in random_clips(2, 5, 32, seed=9):
        (heldout / "gt" / f"{key}.mkv").write_bytes(encode_video(frames))
        lq = video_to_frames(resize_video(frames_to_video(frames)[None], (8, 8))[0].clamp(-1, 1))
        (heldout / "lq_bicubic" / f"{key}.mkv").write_bytes(encode_video(lq))
    (heldout / "manifest.json").write_text(json.dumps({"scale": 4}))
    recipe = write_config(tmp_path, backbone_dir, shard_dirs)
    name = str(tmp_path / "compare")
    subprocess.run(
        [
            sys.executable,
            BENCHMARK,
            "--size",
            "tiny",
            "--steps",
            "1",
            "--methods",
            "state_aware,lora",
            "--name",
            name,
            "--quality-steps",
            "2",
            "--seeds",
            "0",
            "1",
            "--heldout",
            str(heldout),
            "--recipe",
            recipe,
            "--work",
            str(tmp_path / "runs"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.load(open(f"{name}.json"))
    for row in result["methods"]:
        assert 0 < row["psnr_y"] < 100 and row["psnr_y_std"] >= 0 and 0 < row["ssim_y"] <= 1
        assert row["quality_trainable_params"] > 0
    assert result["bicubic_psnr_y"] > 0 and result["no_adapter_psnr_y"] > 0
    assert os.path.getsize(f"{name}_quality.png") > 0
    scored = json.load(open(tmp_path / "runs" / "scores.json"))  # what a rerun resumes from
    assert {"state_aware_seed0_steps2", "lora_seed1_steps2", "floors"} <= set(scored)
    for row in result["methods"]:  # the spread is the sample standard deviation over the seeds
        first, second = (scored[f"{row['name']}_seed{seed}_steps2"]["psnr_y"] for seed in (0, 1))
        assert first != second and row["psnr_y_std"] == pytest.approx(abs(first - second) / 2**0.5)
    gaps = [
        scored[f"lora_seed{seed}_steps2"]["psnr_y"] - scored[f"state_aware_seed{seed}_steps2"]["psnr_y"]
        for seed in (0, 1)
    ]
    lora = next(r for r in result["methods"] if r["name"] == "lora")
    assert lora["psnr_y_vs_state_aware"] == pytest.approx(sum(gaps) / 2)  # paired by seed
    assert lora["psnr_y_vs_state_aware_std"] == pytest.approx(abs(gaps[0] - gaps[1]) / 2**0.5)

    def rescore(*args):
        again = [*args, "--name", str(tmp_path / "again"), "--reuse", f"{name}.json", "--work", str(tmp_path / "runs")]
        return subprocess.run(
            [sys.executable, BENCHMARK, "--size", "tiny", "--methods", "state_aware,lora", "--heldout", str(heldout)]
            + ["--recipe", recipe, *again],
            capture_output=True,
            text=True,
        )

    # A table that would mix budgets is refused before anything trains ...
    refused = rescore("--quality-steps", "3", "--seeds", "0", "1", "--quality-methods", "state_aware")
    assert refused.returncode and "scored lora after" in refused.stderr.strip().splitlines()[-1]
    assert "state_aware_seed0_steps3" not in json.load(open(tmp_path / "runs" / "scores.json"))
    # ... while one that scores every method again may use another budget (here from the kept scores).
    again = rescore("--quality-steps", "2", "--seeds", "0", "--quality-methods", "state_aware,lora")
    assert again.returncode == 0, again.stderr[-2000:]
    result = json.load(open(tmp_path / "again.json"))
    assert result["quality"]["seeds"] == [0]
    assert {r["name"]: r["psnr_y"] for r in result["methods"]} == {
        m: scored[f"{m}_seed0_steps2"]["psnr_y"] for m in ("state_aware", "lora")
    }


def test_string_arguments_of_an_ablation_reach_the_cli_unquoted():
    """A JSON-quoted '"none"' was refused by the CLI, and the sigma-independent quality run failed."""
    sys.path.insert(0, os.path.dirname(BENCHMARK))
    import compare_adapters

    command = compare_adapters.fit_command("sigma_independent", 3, 0, "out", "recipe.yaml", None)
    assert command[command.index("--model.adapter.init_args.time_conditioning") + 1] == "none"
    command = compare_adapters.fit_command("inject_every_6", 3, 0, "out", "recipe.yaml", None)
    assert command[command.index("--model.adapter.init_args.inject_every") + 1] == "6"
