"""Seeds derived from a run's seed and a position (epoch, rank, worker, sample; step, batch), so that every random
draw of training can be made again from where it stands, as a resume needs."""

import hashlib


def derive_seed(*parts: int) -> int:
    """A 56-bit seed for `torch.Generator.manual_seed`, different for any two different tuples of integers (up to
    hash collisions), unlike sums and products of them."""
    digest = hashlib.blake2b(",".join(str(int(p)) for p in parts).encode(), digest_size=7).digest()
    return int.from_bytes(digest, "little")


def keyed_seed(seed: int, key: str) -> int:
    """A 56-bit seed from a run's seed and a sample's key (its name in the shards, or a window's index)."""
    digest = hashlib.blake2b(f"{int(seed)}:{key}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "little")
