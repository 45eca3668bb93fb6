"""litevsr: video super-resolution by steering a frozen video DiT with a State-Aware Adapter.

`litevsr.LiteVSRPipeline` loads on first use, so that the data tools (`litevsr.data`) never import the models.
"""

from litevsr.errors import LiteVSRError
from litevsr.version import __version__

__all__ = ["LiteVSRError", "LiteVSRPipeline", "LiteVSRPipelineOutput", "Sampling", "__version__"]


def __getattr__(name: str):
    if name in ("LiteVSRPipeline", "LiteVSRPipelineOutput", "Sampling"):
        import litevsr.pipeline

        return getattr(litevsr.pipeline, name)
    raise AttributeError(f"module 'litevsr' has no attribute {name!r}")
