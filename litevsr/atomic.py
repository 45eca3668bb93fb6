"""Atomic writes of files and folders: readers see the old one or the whole new one, never half of it.

    with atomic_path("out/manifest.json") as tmp:
        write_the_file(tmp)        # any writer that takes a path
    # here out/manifest.json is the new file; had the block raised, the old one (or none) and no temporary file

The temporary file lies in the target's folder (os.replace is atomic only within one file system) and is named
`<target>.<8 hex>.partial<suffix>`, so a process killed mid-write leaves a file that globs on `<target>*` find
and `.partial` marks as unfinished.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside `path`; when the block ends without an error it replaces `path`.

    The block may write a file or a folder there; either replaces a file or a folder at `path`. On an error (any
    exception, KeyboardInterrupt included) what the block made is removed and `path` is left as it was. The block
    must close its files before it ends.

    Args:
        path: The file to write; its folder must exist.
        suffix: Appended to the temporary name, for writers that pick a format by the extension (e.g. ".mp4").
    """
    path = os.fspath(path)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial{suffix}"  # unique: concurrent writers never share a temporary
    try:
        yield tmp
        _replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _replace(tmp: str, path: str) -> None:
    """os.replace, which cannot replace a folder nor put a folder over a file: the old entry is moved aside first,
    then removed."""
    if not (os.path.lexists(path) and (os.path.isdir(path) or os.path.isdir(tmp))):
        os.replace(tmp, path)
        return
    old = f"{tmp}.old"
    os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON to `path` through atomic_path."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
