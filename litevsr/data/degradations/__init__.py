"""Degradations: HQ video -> LQ video, seeded by a torch.Generator.

- functions: pure functions on (B, 3, T, H, W) videos in [-1, 1] (kernels, blur, noise, JPEG, codec, old film).
- pipelines: per-clip degradations that draw parameters and chain the functions (Degradation and its
  subclasses, RealWorldOptions and its PRESETS); recipes name them as litevsr.data.degradations.<Class>.
"""

from litevsr.data.degradations.functions import (CODECS, RESIZE_MODES, anisotropic_gaussian_kernel, blur,
                                                 blur_kernel, dust, film_grain, flicker, gaussian_kernel,
                                                 gaussian_kernel_1d, gaussian_noise, generalized_gaussian_kernel,
                                                 jpeg, plateau_kernel, poisson_noise, posterize, quantize,
                                                 resize_video, scratches, separable_blur, sinc_kernel, unsharp_mask,
                                                 video_codec)
from litevsr.data.degradations.pipelines import (KERNEL_KINDS, PRESETS, Degradation, MixedDegradation,
                                                 RealWorldDegradation, RealWorldOptions, SimpleDegradation,
                                                 preset_options)

__all__ = [
    "CODECS", "KERNEL_KINDS", "PRESETS", "RESIZE_MODES", "Degradation", "MixedDegradation", "RealWorldDegradation",
    "RealWorldOptions", "SimpleDegradation", "anisotropic_gaussian_kernel", "blur", "blur_kernel", "dust",
    "film_grain", "flicker", "gaussian_kernel", "gaussian_kernel_1d", "gaussian_noise",
    "generalized_gaussian_kernel", "jpeg", "plateau_kernel", "poisson_noise", "posterize", "preset_options",
    "quantize", "resize_video", "scratches", "separable_blur", "sinc_kernel", "unsharp_mask", "video_codec",
]
