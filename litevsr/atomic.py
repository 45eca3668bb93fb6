"""Atomic file writes: readers see the old file or the whole new one, never half of it.

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
import uuid
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside `path`; when the block ends without an error it replaces `path`.

    On an error (any exception, KeyboardInterrupt included) the temporary file is removed, if the block made it,
    and `path` is left as it was. The block must close the file before it ends.

    Args:
        path: The file to write; its folder must exist.
        suffix: Appended to the temporary name, for writers that pick a format by the extension (e.g. ".mp4").
    """
    path = os.fspath(path)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial{suffix}"  # unique: concurrent writers never share a temporary
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON to `path` through atomic_path."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
