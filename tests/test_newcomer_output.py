"""What a newcomer's `make demo` prints is meant for them: no warnings addressed to other people, progress in steps."""

import logging
import os
import sys
import warnings

import pytest
from test_training import write_config

from litevsr.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_install_reads_the_licence_without_a_deprecation():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), os.path.join(ROOT, "pyproject.toml"))
    assert dist.metadata.license_expression == "Apache-2.0"
    assert [str(w.message) for w in seen if "license" in str(w.message).lower()] == []
    # an SPDX string is read from setuptools 77 on: the build must not pick an older one
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    setuptools = next(Requirement(r) for r in requires if Requirement(r).name == "setuptools")
    assert "77.0" in setuptools.specifier and "76.9" not in setuptools.specifier


def test_a_fit_shows_steps_against_max_steps_and_nothing_meant_for_others(
    tmp_path, backbone_dir, shard_dirs, capsys, monkeypatch
):
    """As `python -m litevsr fit ...` runs it: the arguments come from sys.argv."""
    config = write_config(tmp_path, backbone_dir, shard_dirs)
    monkeypatch.setattr(sys, "argv", ["litevsr", "fit", "--config", config, "--trainer.enable_progress_bar", "true"])
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    lightning_info = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where Lightning's notes go
    lightning_info.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            main()
    finally:
        lightning_info.removeHandler(handler)
    unwanted = ("LeafSpec", "in eval mode at the start of training", "LightningCLI's args parameter")
    assert [str(w.message) for w in seen if any(u in str(w.message) for u in unwanted)] == []
    assert [m for m in logged if "Tip:" in m] == [] and any("litevsr: done." in m for m in logged)
    out = capsys.readouterr().out
    assert "step 3/3 " in out and "Epoch" not in out


def test_a_recipes_own_progress_bar_or_none_is_kept(tmp_path, backbone_dir, shard_dirs, capsys):
    config = write_config(tmp_path, backbone_dir, shard_dirs)  # enable_progress_bar: false
    main(["fit", "--config", config])
    assert "step 3/3" not in capsys.readouterr().out
    bar = '[{"class_path": "lightning.pytorch.callbacks.TQDMProgressBar"}]'
    main(["fit", "--config", config, "--trainer.enable_progress_bar", "true", "--trainer.callbacks", bar])
    out = capsys.readouterr().out
    assert "Epoch 0" in out and "step 3/3" not in out
