"""Every method in one harness: the State-Aware Adapter, its ablations and the baselines (LoRA, a half-depth
ControlNet copy, full fine-tuning), each trained by LiteVSRModule on the same frozen backbone and batch.

1. Trainable parameters at the real shapes of every known backbone (meta device, nothing downloaded).
2. Step time and gradient + optimizer memory on cached latents, one process per method (peak RSS is its own): a
   backbone with Wan2.1-1.3B's proportions at width 512 (`--size mid`, as benchmarks/train_step.py), fp32, no
   gradient checkpointing. `--size tiny` is the CI-sized run.
3. With `--quality-steps N`: quality after an equal budget. Each method is trained for N steps by the same
   recipe (recipes/general_x4.yaml, plus recipes/methods/<method>.yaml for the baselines, from scratch) for every
   `--seeds`, then scored on the held-out set (benchmarks/heldout_data.py) at x4, 1 step, over both LQ kinds:
   PSNR-Y (mean over seeds, their sample standard deviation, and the gap to the State-Aware Adapter seed by
   seed, since a seed draws the same data for every method), SSIM-Y and the temporal warping error, with bicubic
   and the bare generator as floors. Hours on a 2-core CPU at N = 300 with three seeds.

    python benchmarks/compare_adapters.py [--size mid|tiny] [--steps 3] [--methods state_aware,lora,...]
    python benchmarks/compare_adapters.py --quality-steps 300 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys

import torch
from common import RESULTS, ROOT, peak_memory_mib, report, time_training_steps
from train_step import CACHED_LATENTS, CACHED_TRANSFORMER

#: name -> (adapter class name in litevsr.adapters, arguments). The State-Aware rows use the default adapter; in the
#: quality runs, the recipe's adapter with these arguments instead.
METHODS = {
    "state_aware": ("StateAwareAdapter", {}),
    "no_refinement": ("StateAwareAdapter", {"refinement_depth": 0}),
    "no_time_modulation": ("StateAwareAdapter", {"time_conditioning": "gate"}),
    "sigma_independent": ("StateAwareAdapter", {"time_conditioning": "none"}),
    "x0_hat_state": ("StateAwareAdapter", {"state_input": "x0_hat"}),
    "inject_every_6": ("StateAwareAdapter", {"inject_every": 6}),
    "lora": ("LoRAAdapter", {"rank": 96}),  # about the State-Aware Adapter's count at Wan2.1-1.3B
    "controlnet": ("ControlNetAdapter", {}),  # half the depth
    "full": ("FullFinetuneAdapter", {}),
}
SIZES = {
    "mid": {"transformer": CACHED_TRANSFORMER, "latents": CACHED_LATENTS, "time_dim": 96},
    "tiny": {
        "transformer": {
            **CACHED_TRANSFORMER,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "ffn_dim": 64,
            "num_layers": 6,
            "text_dim": 16,
            "freq_dim": 32,
        },
        "latents": (16, 2, 4, 4),
        "time_dim": 16,
    },
}
#: learning rates of the quality runs: the recipe's for the adapters, lower where all the transformer trains
QUALITY_LR = {"full": 1e-4}
#: arguments of the quality runs on the embedded generator: LoRA at about the State-Aware Adapter's count there
#: (rank 16: 320 k + the widened patch embedding, against 345 k)
QUALITY_ARGS = {"lora": {"rank": 16}}


def fit_command(method: str, steps: int, seed: int, out: str, recipe: str, train_shards: str | None) -> list[str]:
    """`litevsr fit` of one method for an equal-budget comparison: the recipe, the method's piece, no warm start."""
    name, kwargs = METHODS[method]
    kwargs = {**kwargs, **QUALITY_ARGS.get(method, {})}
    command = [sys.executable, "-m", "litevsr", "fit", "--config", recipe]
    if name != "StateAwareAdapter":
        command += ["--config", os.path.join(ROOT, "recipes", "methods", f"{method}.yaml")]
    for key, value in kwargs.items():
        command += [f"--model.adapter.init_args.{key}", value if isinstance(value, str) else json.dumps(value)]
    command += [
        "--model.init_adapter",
        "null",
        "--seed_everything",
        str(seed),
        "--trainer.max_steps",
        str(steps),
        "--trainer.val_check_interval",
        str(steps),
        "--trainer.limit_val_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        out,
        "--trainer.logger.init_args.name",
        f"{method}_seed{seed}",
        "--trainer.logger.init_args.version",
        f"steps{steps}",
    ]
    if method in QUALITY_LR:
        command += ["--model.optimizer.init_args.lr", str(QUALITY_LR[method])]
    if train_shards:
        command += ["--data.init_args.train_shards", train_shards, "--data.init_args.val_shards", train_shards]
    return command


TIMING_KEYS = ("name", "trainable_params", "share", "step_seconds", "grad_and_optimizer_MiB", "peak_memory_mib")
QUALITY_KEYS = (
    "psnr_y",
    "psnr_y_std",
    "psnr_y_vs_state_aware",
    "psnr_y_vs_state_aware_std",
    "ssim_y",
    "warp_error",
    "quality_trainable_params",
)


def sample_std(values: list[float]) -> float:
    import numpy as np

    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def quality(
    methods: list[str], steps: int, seeds: list[int], heldout: str, recipe: str, train_shards: str | None, out: str
) -> tuple[dict, dict]:
    """{method: {psnr_y, psnr_y_std, psnr_y_vs_state_aware(_std), ssim_y, warp_error}} after `steps` steps per
    seed, and the floors."""
    import numpy as np

    from litevsr.atomic import write_json_atomic
    from litevsr.backbones import WanBackbone
    from litevsr.evaluate import evaluate
    from litevsr.pipeline import LiteVSRPipeline

    scale = json.load(open(os.path.join(heldout, "manifest.json")))["scale"]
    lq_folders = [f for f in ("lq_bicubic", "lq_realworld") if os.path.isdir(os.path.join(heldout, f))]

    def score(models) -> dict[str, list[dict]]:
        rows = [
            row
            for folder in lq_folders
            for row in evaluate(
                models, os.path.join(heldout, "gt"), os.path.join(heldout, folder), scale, os.path.join(out, "eval")
            )
        ]
        return {m: [r for r in rows if r["method"] == m] for m in {r["method"] for r in rows}}

    # Each scored run is kept in <out>/scores.json, so an interrupted comparison resumes where it stopped.
    done_path = os.path.join(out, "scores.json")
    done = json.load(open(done_path)) if os.path.exists(done_path) else {}
    per_method, floors = {}, done.get("floors")
    for method in methods:
        runs = []
        for seed in seeds:
            key = f"{method}_seed{seed}_steps{steps}"
            run = os.path.join(out, f"{method}_seed{seed}", f"steps{steps}")
            if key not in done:
                shutil.rmtree(run, ignore_errors=True)  # what an interrupted fit left
                log = os.path.join(out, f"{key}.log")
                with open(log, "w") as f:
                    fit = subprocess.run(
                        fit_command(method, steps, seed, out, recipe, train_shards),
                        cwd=ROOT,
                        stdout=f,
                        stderr=subprocess.STDOUT,
                    )
                if fit.returncode:
                    raise SystemExit(f"training {method} (seed {seed}) failed: see {log}")
                pipe = LiteVSRPipeline.from_pretrained(os.path.join(run, "adapter"))
                sampling = pipe.sampling()
                models = [("method", pipe, sampling)]
                if floors is None:  # the bare generator, with the same sampler
                    models.append(("no adapter", pipe.without_adapter(WanBackbone(pipe.backbone.name)), sampling))
                scores = score(models)
                if floors is None:
                    floors = {k: float(np.mean([r["psnr_y"] for r in scores[k]])) for k in ("bicubic", "no adapter")}
                done[key] = {
                    k: float(np.mean([r[k] for r in scores["method"]])) for k in ("psnr_y", "ssim_y", "warp_error")
                }
                done[key]["trained"] = sum(p.numel() for p in pipe.velocity_field.trained_parameters().values())
                done["floors"] = floors
                write_json_atomic(done_path, done)
            runs.append(done[key])
            trained = done[key]["trained"]
            print(f"{method} seed {seed}: PSNR-Y {runs[-1]['psnr_y']:.3f}", file=sys.stderr, flush=True)
        psnr = [r["psnr_y"] for r in runs]
        per_method[method] = {
            "quality_trainable_params": trained,
            "psnr_y": float(np.mean(psnr)),
            "psnr_y_std": sample_std(psnr),
            "ssim_y": float(np.mean([r["ssim_y"] for r in runs])),
            "warp_error": float(np.mean([r["warp_error"] for r in runs])),
            "seeds": runs,
        }
    if "state_aware" in per_method:  # a seed draws the same data for every method, so compare seed by seed
        control = [r["psnr_y"] for r in per_method["state_aware"]["seeds"]]
        for found in per_method.values():
            gaps = [r["psnr_y"] - c for r, c in zip(found["seeds"], control)]
            found["psnr_y_vs_state_aware"] = float(np.mean(gaps))
            found["psnr_y_vs_state_aware_std"] = sample_std(gaps)
    return per_method, floors


def make_adapter(method: str, size: dict | None = None):
    """The method's adapter as a recipe gives it: a callable of the backbone's dimensions."""
    import litevsr.adapters as adapters

    name, kwargs = METHODS[method]
    if name == "StateAwareAdapter" and size is not None:  # noise embedding scaled with the width, as at 1.3B
        kwargs = {"time_dim": size["time_dim"], **kwargs}
    if name == "LoRAAdapter" and size is not None and size is SIZES["tiny"]:
        kwargs = {**kwargs, "rank": 4}
    return functools.partial(getattr(adapters, name), **kwargs)


def real_shape_params(methods: list[str]) -> list[dict]:
    from litevsr.backbones import KNOWN_BACKBONES
    from litevsr.module import LiteVSRModule

    rows = []
    for backbone_name, cls in KNOWN_BACKBONES.items():
        for method in methods:
            counts = LiteVSRModule(cls(backbone_name, empty_weights=True), make_adapter(method)).parameter_counts()
            rows.append(
                {
                    "backbone": backbone_name,
                    "method": method,
                    "trainable_params": counts["trainable"],
                    "share_of_transformer": counts["share"],
                }
            )
    return rows


def run_steps(method: str, size_name: str, steps: int) -> dict:
    import tempfile

    from litevsr.backbones.wan import WAN, WanBackbone
    from litevsr.module import LiteVSRModule
    from litevsr.zoo.twins import twin_config

    size = SIZES[size_name]
    config = {"transformer": size["transformer"], "vae": twin_config("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")["vae"]}
    with tempfile.TemporaryDirectory() as folder:
        WAN.save(*WAN.build(config), folder, torch.randn(1, 16, size["transformer"]["text_dim"]))
        backbone = WanBackbone(folder)
    torch.manual_seed(0)
    module = LiteVSRModule(backbone, make_adapter(method, size))
    module.log = lambda *a, **k: None  # no trainer attached
    optimizer = module.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    x0, cond = (torch.randn(2, *size["latents"], generator=g) for _ in range(2))
    batch = {"hq_latents": x0, "cond_latents": cond, "vae_fingerprint": [backbone.vae_fingerprint] * 2}

    seconds, held = time_training_steps(lambda: module.training_step(batch, 1), optimizer, steps)
    counts = module.parameter_counts()
    return {
        "name": method,
        "trainable_params": counts["trainable"],
        "share": counts["share"],
        "step_seconds": seconds,
        "grad_and_optimizer_MiB": held / 2**20,
        "peak_memory_mib": peak_memory_mib(),
    }


def plot(rows: list[dict], name: str) -> None:
    """<name>_step_time.png, and <name>_quality.png (PSNR-Y against trainable parameters) where quality was run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([r["name"] for r in rows], [r["step_seconds"] for r in rows], color="#4477aa")
    ax.set_xlabel("seconds per training step (same backbone, batch and precision)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"{name}_step_time.png"), dpi=120)
    scored = [r for r in rows if r.get("psnr_y_vs_state_aware") is not None]
    if scored:  # the gap seed by seed: the seeds' shared data moves every method alike, so it cancels
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.axhline(0, color="#999999", lw=0.8)
        for r in sorted(scored, key=lambda r: -r["psnr_y_vs_state_aware"]):  # legend in the order of the gap
            point = (r["quality_trainable_params"], r["psnr_y_vs_state_aware"])
            ax.errorbar(*point, yerr=r["psnr_y_vs_state_aware_std"], fmt="o", capsize=3, label=r["name"])
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (embedded generator)")
        ax.set_ylabel("held-out PSNR-Y minus State-Aware's (dB),\nmean and spread over seeds")
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, f"{name}_quality.png"), dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="mid")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method, after one warm-up")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="compare_adapters", help="results name: benchmarks/results/<name>.json")
    parser.add_argument(
        "--quality-steps",
        type=int,
        default=0,
        help="train every method this many steps and score it on the held-out set (0: skip)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quality-methods", default=None, help="methods the quality runs cover (default: --methods)")
    parser.add_argument(
        "--reuse",
        default=None,
        help="an earlier results JSON of this benchmark (same --size): its step times instead of timing again, and "
        "its held-out scores of the methods that --quality-methods does not score again",
    )
    parser.add_argument(
        "--heldout", default=os.path.join(ROOT, "data", "heldout"), help="held-out set (benchmarks/heldout_data.py)"
    )
    parser.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "general_x4.yaml"))
    parser.add_argument("--train-shards", default=None, help="override the recipe's training (and validation) shards")
    parser.add_argument(
        "--work",
        default=os.path.join(ROOT, "runs", "compare_adapters"),
        help="the quality runs' folder: their logs, adapters and scores (a rerun resumes from it)",
    )
    opts = parser.parse_args()
    if opts.one:
        print(json.dumps(run_steps(opts.one, opts.size, opts.steps)))
        return
    methods = [m for m in opts.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    real = real_shape_params(methods)
    rows = []
    earlier = json.load(open(opts.reuse)) if opts.reuse else {"methods": []}
    timed = {r["name"]: r for r in earlier["methods"]}
    for method in methods:
        if method in timed:  # measured by an earlier run of this benchmark
            rows.append({k: timed[method].get(k) for k in TIMING_KEYS + QUALITY_KEYS})
            continue
        out = subprocess.run(
            [sys.executable, __file__, "--one", method, "--size", opts.size, "--steps", str(opts.steps)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{method}: {rows[-1]['step_seconds']:.3f} s/step", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["name"] == "state_aware"), rows[0])
    scores, floors = {}, {"bicubic": None, "no adapter": None}
    if opts.quality_steps:
        scored = [m for m in (opts.quality_methods or opts.methods).split(",") if m in methods]
        kept = [r["name"] for r in rows if r["name"] not in scored and r.get("psnr_y") is not None]
        budget = earlier.get("quality") if isinstance(earlier.get("quality"), dict) else {}
        budget = {k: budget.get(k) for k in ("steps", "seeds")}
        if kept and budget != {"steps": opts.quality_steps, "seeds": opts.seeds}:  # one table, one budget
            raise SystemExit(
                f"{opts.reuse} scored {', '.join(kept)} after {budget}: score them too, or use the same "
                "--quality-steps and --seeds"
            )
        os.makedirs(opts.work, exist_ok=True)
        scores, floors = quality(
            scored,
            opts.quality_steps,
            opts.seeds,
            os.path.abspath(opts.heldout),
            os.path.abspath(opts.recipe),
            opts.train_shards,
            os.path.abspath(opts.work),
        )
    for row in rows:
        row["step_vs_state_aware"] = row["step_seconds"] / base["step_seconds"]
        if row["name"] in scores or row.get("psnr_y") is None:
            found = scores.get(row["name"], {})
            row.update({k: found.get(k) for k in QUALITY_KEYS})
    if not scores and isinstance(earlier.get("quality"), dict):
        floors = {"bicubic": earlier["bicubic_psnr_y"], "no adapter": earlier["no_adapter_psnr_y"]}
    scored_rows = [r["name"] for r in rows if r.get("psnr_y") is not None]
    os.makedirs(RESULTS, exist_ok=True)
    plot(rows, opts.name)
    columns = [
        "name",
        "trainable_params",
        "share",
        "step_seconds",
        "step_vs_state_aware",
        "grad_and_optimizer_MiB",
        "peak_memory_mib",
    ] + (
        ["psnr_y", "psnr_y_std", "psnr_y_vs_state_aware", "psnr_y_vs_state_aware_std", "ssim_y", "warp_error"]
        if scored_rows
        else []
    )
    report(
        opts.name,
        rows,
        columns,
        {
            "methods": rows,
            "real_shapes": real,
            "size": opts.size,
            "steps_timed": opts.steps,
            "precision": "fp32",
            "gradient_checkpointing": False,
            "batch": f"2 latent clips {SIZES[opts.size]['latents']}",
            "bicubic_psnr_y": floors["bicubic"],
            "no_adapter_psnr_y": floors["no adapter"],
            "quality": {
                "steps": opts.quality_steps or earlier["quality"]["steps"],
                "seeds": opts.seeds if scores else earlier["quality"]["seeds"],
                "recipe": os.path.relpath(opts.recipe, ROOT),
                "heldout": os.path.relpath(opts.heldout, ROOT),
                "methods": scored_rows,
                "scored_now": list(scores),
            }
            if scored_rows
            else "not measured (run with --quality-steps N)",
        },
    )
    print()
    report(f"{opts.name}_real_shapes", real, ["backbone", "method", "trainable_params", "share_of_transformer"])


if __name__ == "__main__":
    main()
