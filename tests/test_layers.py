"""The package's layers: no import cycles, what is frozen never imports what trains, and the zoo sits above both."""

import ast
import os
import subprocess
import sys

from litevsr.backbones.base import resolve_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_import_cycles_counting_imports_inside_functions():
    run = subprocess.run([sys.executable, "tools/import_cycles.py"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert ", 0 cycles" in run.stdout


def _imports(folder: str) -> set[str]:
    names = set()
    for base, _, files in os.walk(os.path.join(ROOT, "litevsr", folder)):
        for file in files:
            if file.endswith(".py"):
                tree = ast.parse(open(os.path.join(base, file)).read())
                names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
                names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return names


def test_backbones_import_neither_adapters_nor_what_sits_above():
    above = ("litevsr.adapters", "litevsr.zoo", "litevsr.pipeline", "litevsr.module", "litevsr.cli")
    assert not [n for n in _imports("backbones") if n.startswith(above)]
    assert not [n for n in _imports("adapters") if n.startswith(("litevsr.backbones", *above[1:]))]


def test_only_the_embedded_vae_gets_its_no_op_layers_walked(causal_twin):
    from litevsr.backbones import WanBackbone
    from litevsr.zoo.pca_vae import skip_noop_layers

    assert resolve_source("tiny")[1] is skip_noop_layers
    assert resolve_source(causal_twin["backbone"]) == (causal_twin["backbone"], None)
    twin = WanBackbone(causal_twin["backbone"])
    assert not [m for m in twin.vae.modules() if type(m).__name__ == "_PassThrough"]
    assert [m for m in WanBackbone("tiny").vae.modules() if type(m).__name__ == "_PassThrough"]
