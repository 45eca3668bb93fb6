import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(
    shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")), reason="needs a git checkout"
)
def test_no_package_file_is_git_ignored():
    """An ignore rule once hid litevsr/data from every clone (`data/` instead of `/data/`)."""
    files = [
        os.path.relpath(os.path.join(d, f), ROOT)
        for d, _, fs in os.walk(os.path.join(ROOT, "litevsr"))
        for f in fs
        if not f.endswith(".pyc") and "__pycache__" not in d
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *files], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == []
