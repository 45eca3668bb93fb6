"""Cut video files into clips and write WebDataset shards (lossless HQ clips + JSON metadata).

    python data_prep/make_shards.py VIDEOS_OR_FOLDERS... OUT_DIR --clip-frames 17 --license "CC-BY 4.0"
"""

from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from litevsr import LiteVSRError
from litevsr.data.shards import write_shards
from litevsr.data.sources import video_clips
from litevsr.data.video import video_info

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".y4m"}


def find_videos(inputs: list[str]) -> list[str]:
    found = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in os.walk(item):
                found += [os.path.join(root, f) for f in files if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS]
        elif os.path.isfile(item):
            found.append(item)
        else:
            raise LiteVSRError(f"input not found: {item}")
    if not found:
        raise LiteVSRError(f"no video files in {inputs}")
    return sorted(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="video files or folders (searched recursively)")
    parser.add_argument("out", help="output folder for the .tar shards and manifest.json")
    parser.add_argument("--clip-frames", type=int, default=17, help="frames per clip (default 17)")
    parser.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: clip length)")
    parser.add_argument("--max-side", type=int, default=512, help="downscale so the longer side is at most this")
    parser.add_argument("--clips-per-shard", type=int, default=64)
    parser.add_argument("--license", default="unknown", help="licence recorded with every clip")
    parser.add_argument("--prefix", default="clips", help="shard file prefix")
    args = parser.parse_args(argv)
    try:
        if os.path.exists(os.path.join(args.out, "manifest.json")):
            raise LiteVSRError(f"{args.out} already holds shards (manifest.json); choose another folder")
        videos = find_videos(args.inputs)
        progress = tqdm(videos, desc="videos", unit="video")

        def clips():
            for path in progress:
                info = video_info(path)
                meta = {"source": os.path.abspath(path), "license": args.license, "fps": info["fps"]}
                yield from video_clips(path, args.clip_frames, args.stride or args.clip_frames, args.max_side, meta)

        stats = write_shards(clips(), args.out, args.clips_per_shard, args.prefix)
        print(f"wrote {stats['clips']} clips in {stats['shards']} shard(s) to {args.out} (manifest.json)")
    except LiteVSRError as err:
        print(f"make_shards: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
