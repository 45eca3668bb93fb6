"""Trainable share of the default State-Aware Adapter at each known real backbone, built on the meta device.

The share is adapter parameters / the transformer's parameters (VAE excluded): the paper's "trainable parameters
within the diffusion backbone", 11.25 % in arXiv v1 (12.68 % on the project page). The same number is printed at
the start of every fit (`LiteVSRModule.parameter_counts`).

    python benchmarks/parameter_table.py
"""

from __future__ import annotations

from common import report

PAPER_SHARE = 0.1125


def main() -> None:
    from litevsr.adapters import StateAwareAdapter
    from litevsr.backbones import KNOWN_BACKBONES
    from litevsr.module import LiteVSRModule

    rows = []
    for name, cls in KNOWN_BACKBONES.items():
        backbone = cls(name, empty_weights=True)
        adapter = StateAwareAdapter
        counts = LiteVSRModule(backbone, adapter).parameter_counts()
        rows.append(
            {
                "backbone": name,
                "hidden": backbone.hidden_dim,
                "blocks": backbone.num_blocks,
                "injected blocks": len(adapter.targets),
                "adapter": counts["trainable"],
                "transformer": counts["transformer"],
                "adapter (M)": f"{counts['trainable'] / 1e6:,.1f}",
                "transformer (M)": f"{counts['transformer'] / 1e6:,.1f}",
                "trainable share": f"{100 * counts['share']:.2f} %",
                "share": counts["share"],
                "within the paper's 11.25 %": counts["share"] <= PAPER_SHARE,
            }
        )
    columns = [
        "backbone",
        "hidden",
        "blocks",
        "injected blocks",
        "adapter (M)",
        "transformer (M)",
        "trainable share",
        "within the paper's 11.25 %",
    ]
    report(
        "parameter_table",
        rows,
        columns,
        {"definition": "adapter / transformer parameters (VAE excluded)", "paper_share": PAPER_SHARE},
    )


if __name__ == "__main__":
    main()
