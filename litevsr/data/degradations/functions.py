"""Degradations as pure functions on video tensors (B, 3, T, H, W) in [-1, 1], seeded by a generator.

Conventions:
- Per-frame parameters are tensors of shape (T,) (the same for every clip in the batch) or (B, T); scalars
  apply to every frame. Kernels are (k, k), (T, k, k) or (B, T, k, k) and are applied frame by frame.
- Noise levels are in 8-bit units (0-255), as in Real-ESRGAN; the video itself lives in [-1, 1].
- Randomness only comes from the `generator` argument (CPU), so a seed fixes the output.
The per-clip pipelines that draw the parameters and chain these live in litevsr.data.degradations.pipelines.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from litevsr.data.video import X264_REPEATABLE
from litevsr.frames import (
    frames_to_video,
    resize_video,  # noqa: F401  (a degradation step too: exported with the others)
    u8_values,
    video_to_frames,
)

RESIZE_MODES = ("area", "bilinear", "bicubic", "nearest")
CODECS = ("libx264", "h264", "mpeg4")  # PyAV encoder names; in PyAV's FFmpeg "h264" encodes with libx264


def _frames(video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    b, c, t = video.shape[:3]
    return video.transpose(1, 2).reshape(b * t, c, *video.shape[-2:]), (b, t)


def _video(frames: torch.Tensor, bt: tuple[int, int]) -> torch.Tensor:
    b, t = bt
    return frames.reshape(b, t, *frames.shape[1:]).transpose(1, 2)


def _per_frame(value, video: torch.Tensor) -> torch.Tensor:
    """A scalar, (T,) or (B, T) parameter as a float tensor that broadcasts against (B, C, T, H, W)."""
    value = torch.as_tensor(value, dtype=video.dtype, device=video.device)
    if value.dim() == 1:
        return value.view(1, 1, -1, 1, 1)
    if value.dim() == 2:
        return value.view(value.shape[0], 1, value.shape[1], 1, 1)
    return value


def _frame_values(value, b: int, t: int) -> list[float]:
    """A scalar, (T,) or (B, T) parameter as a flat list of B*T Python floats (clip-major)."""
    value = torch.as_tensor(value, dtype=torch.float64)
    return value.expand(b, t).reshape(-1).tolist() if value.dim() else [float(value)] * (b * t)


# ----------------------------------------------------------------------------------------------- kernels


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return ax.view(1, -1).expand(size, size), ax.view(-1, 1).expand(size, size)  # x (columns), y (rows)


def _normalise(kernel: torch.Tensor, dims: tuple[int, ...] = (-2, -1)) -> torch.Tensor:
    """float64 taps -> float32 taps summing to 1 over `dims`.

    Taps below 1e-12 of the sum are set to zero: as float32 they would be denormal numbers, which made CPU
    convolutions with small-sigma kernels about 10x slower, and they change no output by a measurable amount.
    """
    kernel = kernel / kernel.sum(dim=dims, keepdim=True)
    kernel = torch.where(kernel.abs() < 1e-12, torch.zeros_like(kernel), kernel)
    return (kernel / kernel.sum(dim=dims, keepdim=True)).float()


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """An isotropic 2D Gaussian kernel (size x size) that sums to 1."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return _normalise(torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2)))


def _quadratic_form(size: int, sigma_x, sigma_y, theta) -> torch.Tensor:
    """x^T Sigma^-1 x on a size x size grid, Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T.

    Parameters are scalars or tensors of one shape S; the result is S + (size, size).
    """
    sx, sy, th = (torch.as_tensor(v, dtype=torch.float64) for v in (sigma_x, sigma_y, theta))
    sx, sy, th = (v[..., None, None] for v in torch.broadcast_tensors(sx, sy, th))
    x, y = _grid(size)
    u = x * torch.cos(th) + y * torch.sin(th)  # coordinates along the kernel's own axes
    v = -x * torch.sin(th) + y * torch.cos(th)
    return (u / sx) ** 2 + (v / sy) ** 2


def anisotropic_gaussian_kernel(size: int, sigma_x, sigma_y, theta=0.0) -> torch.Tensor:
    """exp(-q/2), q the quadratic form of an oriented Gaussian (theta in radians); sums to 1.

    Scalars give (size, size); tensors of shape S (e.g. per-frame (T,)) give S + (size, size).
    """
    return _normalise(torch.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(size: int, sigma_x, sigma_y, theta=0.0, beta=1.0) -> torch.Tensor:
    """exp(-q^beta / 2): beta = 1 is Gaussian, < 1 heavier tails, > 1 flatter top and sharper edge; sums to 1."""
    q = _quadratic_form(size, sigma_x, sigma_y, theta)
    beta = torch.as_tensor(beta, dtype=torch.float64)[..., None, None]
    return _normalise(torch.exp(-0.5 * q**beta))


def plateau_kernel(size: int, sigma_x, sigma_y, theta=0.0, beta=1.0) -> torch.Tensor:
    """1 / (1 + q^beta): a flat top with polynomial tails (beta in [1, 2] in Real-ESRGAN); sums to 1."""
    q = _quadratic_form(size, sigma_x, sigma_y, theta)
    beta = torch.as_tensor(beta, dtype=torch.float64)[..., None, None]
    return _normalise(1 / (1 + q**beta))


def sinc_kernel(size: int, omega_c) -> torch.Tensor:
    """Circular ideal low-pass filter with cut-off `omega_c` (radians per pixel, <= pi), truncated; sums to 1.

    h(r) = omega_c J1(omega_c r) / (2 pi r), the inverse Fourier transform of the disc |w| < omega_c.
    Used to simulate ringing and overshoot artefacts.
    """
    omega = torch.as_tensor(omega_c, dtype=torch.float64)[..., None, None]
    x, y = _grid(size)
    r = torch.sqrt(x**2 + y**2)
    safe = torch.where(r > 0, r, torch.ones_like(r))
    h = torch.where(
        r > 0, omega * torch.special.bessel_j1(omega * safe) / (2 * math.pi * safe), omega**2 / (4 * math.pi)
    )  # the limit at r = 0
    return _normalise(h)


def blur_kernel(kind: str, size: int, sigma_x, sigma_y=None, theta=0.0, beta=1.0) -> torch.Tensor:
    """One of Real-ESRGAN's kernel families by name: (generalized_|plateau_)(iso|aniso), or "sinc".

    Iso kinds ignore sigma_y and theta; for "sinc", `sigma_x` is the cut-off omega_c.
    """
    if kind == "sinc":
        return sinc_kernel(size, sigma_x)
    family, _, shape = kind.rpartition("_")
    if shape == "iso":
        sigma_y, theta = sigma_x, 0.0
    elif shape != "aniso":
        raise ValueError(f"unknown kernel kind {kind!r}")
    if family == "":
        return anisotropic_gaussian_kernel(size, sigma_x, sigma_y, theta)
    if family == "generalized":
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, beta)
    if family == "plateau":
        return plateau_kernel(size, sigma_x, sigma_y, theta, beta)
    raise ValueError(f"unknown kernel kind {kind!r}")


# ----------------------------------------------------------------------------------------------- filtering


def _pad(frames: torch.Tensor, p: int) -> torch.Tensor:
    mode = "reflect" if p < min(frames.shape[-2:]) else "replicate"  # reflect needs a frame wider than the pad
    return F.pad(frames, [p] * 4, mode=mode)


def blur(video: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every frame and channel with `kernel`, reflect-padded.

    `kernel` is (k, k) for the whole video, (T, k, k) for one kernel per frame, or (B, T, k, k).
    """
    frames, (b, t) = _frames(video)
    c, k = frames.shape[1], kernel.shape[-1]
    padded = _pad(frames, k // 2)
    # every (frame, channel) plane is its own group: on CPU this depthwise layout is 5-7x faster than B*T
    # samples of C groups, and it takes a different kernel per frame for free
    weight = kernel.to(frames).expand(b, t, k, k).reshape(b * t, 1, 1, k, k).expand(b * t, c, 1, k, k)
    out = F.conv2d(
        padded.reshape(1, b * t * c, *padded.shape[-2:]), weight.reshape(b * t * c, 1, k, k), groups=b * t * c
    )
    return _video(out.reshape(b * t, c, *out.shape[-2:]), (b, t))


def gaussian_kernel_1d(size: int, sigma) -> torch.Tensor:
    """1D Gaussian taps summing to 1: scalar sigma gives (size,), a tensor of shape S gives S + (size,).

    The outer product with itself is gaussian_kernel(size, sigma), so isotropic blurs can run separably.
    """
    sigma = torch.as_tensor(sigma, dtype=torch.float64)[..., None]
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return _normalise(torch.exp(-(ax**2) / (2 * sigma**2)), dims=(-1,))


def separable_blur(video: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """blur() with the kernel outer(kernel, kernel): two 1D passes, k times cheaper than a k x k kernel.

    `kernel` is (k,), (T, k) or (B, T, k).
    """
    frames, (b, t) = _frames(video)
    c, k = frames.shape[1], kernel.shape[-1]
    padded = _pad(frames, k // 2).reshape(1, b * t * c, *(n + 2 * (k // 2) for n in frames.shape[-2:]))
    taps = kernel.to(frames).expand(b, t, k).reshape(b * t, 1, k).expand(b * t, c, k).reshape(b * t * c, 1, 1, k)
    out = F.conv2d(F.conv2d(padded, taps, groups=b * t * c), taps.transpose(-1, -2), groups=b * t * c)
    return _video(out.reshape(b * t, c, *out.shape[-2:]), (b, t))


def unsharp_mask(video: torch.Tensor, sigma: float = 2.0, weight: float = 0.5, threshold: float = 10.0) -> torch.Tensor:
    """Sharpen (for ground truth): add `weight` x (video - Gaussian blur) where the detail exceeds `threshold`.

    The threshold (8-bit levels) keeps flat areas and their noise untouched; its mask is softened with the same
    blur so the sharpened and untouched regions blend without seams. Output is clamped to [-1, 1].
    """
    kernel = gaussian_kernel_1d(2 * math.ceil(3 * sigma) + 1, sigma)
    detail = video - separable_blur(video, kernel)
    sharp = (video + weight * detail).clamp(-1, 1)
    mask = (detail.abs() * 127.5 > threshold).to(video.dtype)
    soft = separable_blur(mask, kernel)
    return soft * sharp + (1 - soft) * video


# ----------------------------------------------------------------------------------------------- noise


def gaussian_noise(
    video: torch.Tensor, sigma, generator: torch.Generator | None = None, gray: bool = False
) -> torch.Tensor:
    """Add N(0, sigma) noise; sigma is in 8-bit units (0-255), as in Real-ESRGAN.

    `sigma` is a scalar, (T,) or (B, T). Gray noise is one draw shared by the three channels.
    """
    shape = (video.shape[0], 1, *video.shape[2:]) if gray else video.shape
    noise = torch.randn(shape, generator=generator).to(video)
    return video + noise * (2 * _per_frame(sigma, video) / 255)


def poisson_noise(
    video: torch.Tensor, scale, generator: torch.Generator | None = None, gray: bool = False, levels: float = 255.0
) -> torch.Tensor:
    """Add signal-dependent shot noise: Poisson(x * levels) / levels - x on [0, 1] intensities, times `scale`.

    `scale` is a scalar, (T,) or (B, T). Gray noise is computed on luminance and shared by the channels.
    Counts above 16 use the normal approximation N(rate, rate) (skewness < 0.25), which is ~10x cheaper
    than drawing Poisson variates everywhere; darker pixels get exact Poisson draws.
    """
    x01 = ((video + 1) / 2).clamp(0, 1)
    if gray:
        x01 = 0.299 * x01[:, 0:1] + 0.587 * x01[:, 1:2] + 0.114 * x01[:, 2:3]
    rate = (x01 * levels).float().cpu()
    noise = torch.randn(rate.shape, generator=generator) * rate.sqrt()
    dark = rate < 16
    noise[dark] = torch.poisson(rate[dark], generator=generator) - rate[dark]
    return video + 2 * noise.to(video) / levels * _per_frame(scale, video)


# ----------------------------------------------------------------------------------------------- compression


def quantize(video: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] and round to the 8-bit grid."""
    return (u8_values(video) / 127.5 - 1).to(video.dtype)


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] -> (B, T, H, W, 3) uint8."""
    return np.stack([video_to_frames(clip) for clip in video.detach()])


def _from_uint8(frames: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) in [-1, 1], on `like`'s device and dtype."""
    return torch.stack([frames_to_video(clip) for clip in frames]).to(like.device, like.dtype)


def jpeg(video: torch.Tensor, quality) -> torch.Tensor:
    """Encode and decode every frame as JPEG with PIL (libjpeg, 4:2:0); `quality` 1-100, scalar, (T,) or (B, T)."""
    frames = _to_uint8(video)
    b, t = frames.shape[:2]
    out = np.empty_like(frames)
    for i, q in enumerate(_frame_values(quality, b, t)):
        buffer = io.BytesIO()
        Image.fromarray(frames[i // t, i % t]).save(buffer, format="JPEG", quality=int(round(min(max(q, 1), 100))))
        out[i // t, i % t] = np.asarray(Image.open(buffer).convert("RGB"))
    return _from_uint8(out, video)


def _codec_roundtrip(frames: np.ndarray, codec: str, bitrate: int, fps: int) -> np.ndarray:
    import av

    t, h, w = frames.shape[:3]
    ph, pw = h + h % 2, w + w % 2  # yuv420p needs even sizes: pad by edge replication, crop after decoding
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = pw, ph, "yuv420p", int(bitrate)
        # A one-second rate buffer makes the encoder keep to the bitrate from the first frames (FFmpeg's mpeg4
        # ignores a bare bitrate on short, small clips). One thread: deterministic and friendly to data-loader
        # workers.
        options = {"threads": "1", "maxrate": str(int(bitrate)), "bufsize": str(int(bitrate))}
        if stream.codec_context.name == "libx264":
            options.update(X264_REPEATABLE)
        stream.codec_context.options = options
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = i
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(decoded) != t:
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} frames for {t}")
    return np.stack(decoded)[:, :h, :w]


def video_codec(video: torch.Tensor, codec: str = "libx264", bitrate: float = 1e5, fps: int = 25) -> torch.Tensor:
    """Encode each clip with a real video encoder (PyAV, in memory, yuv420p) at `bitrate` bits/s and decode it back.

    Odd frame sizes are padded to even and cropped back. `codec` is a PyAV encoder name (see CODECS).
    """
    frames = _to_uint8(video)
    return _from_uint8(np.stack([_codec_roundtrip(clip, codec, bitrate, fps) for clip in frames]), video)


# ----------------------------------------------------------------------------------------------- anime / old film


def posterize(video: torch.Tensor, levels) -> torch.Tensor:
    """Colour quantisation: snap each channel to `levels` evenly spaced values (banding in smooth gradients).

    `levels` (>= 2) is a scalar, (T,) or (B, T).
    """
    steps = _per_frame(levels, video) - 1
    return torch.round((video.clamp(-1, 1) + 1) / 2 * steps) / steps * 2 - 1


def flicker(video: torch.Tensor, gain) -> torch.Tensor:
    """Per-frame exposure change: multiply [0, 1] intensities by `gain`, (T,) or (B, T) (1 = unchanged)."""
    return ((video + 1) * _per_frame(gain, video) - 1).clamp(-1, 1)


def film_grain(
    video: torch.Tensor, strength, generator: torch.Generator | None = None, grain_size: float = 1.0
) -> torch.Tensor:
    """Monochrome film grain: Gaussian noise low-passed to clumps of about `grain_size` pixels (sigma).

    `strength` is the grain's standard deviation in 8-bit units, scalar, (T,) or (B, T); it is strongest in the
    mid-tones, as in film, and fades towards black and white.
    """
    b, _, t, h, w = video.shape
    noise = torch.randn((b, 1, t, h, w), generator=generator).to(video)
    if grain_size > 0.3:
        kernel = gaussian_kernel_1d(2 * math.ceil(2 * grain_size) + 1, grain_size)
        noise = separable_blur(noise, kernel) / kernel.pow(2).sum()  # back to unit variance
    x01 = (video + 1) / 2
    midtones = 4 * x01 * (1 - x01) * 0.75 + 0.25
    return video + noise * midtones * (2 * _per_frame(strength, video) / 255)


def scratches(
    video: torch.Tensor,
    count: int,
    generator: torch.Generator | None = None,
    intensity: tuple[float, float] = (0.3, 0.8),
    max_width: int = 2,
) -> torch.Tensor:
    """Old-film scratches: up to `count` thin vertical lines per frame, mostly bright, random x, length, opacity.

    Each frame draws its own number of lines in [0, count].
    """
    b, _, t, h, w = video.shape
    if count <= 0:
        return video
    n = b * t * count
    active = (torch.randint(0, count + 1, (b * t, 1), generator=generator) > torch.arange(count)).reshape(-1)
    x0 = torch.randint(0, w, (n,), generator=generator)
    width = torch.randint(1, max_width + 1, (n,), generator=generator)
    y0 = (torch.rand(n, generator=generator) * 0.5 * h).long()
    length = ((0.5 + 0.5 * torch.rand(n, generator=generator)) * h).long()
    alpha = intensity[0] + (intensity[1] - intensity[0]) * torch.rand(n, generator=generator)
    colour = 2 * (torch.rand(n, generator=generator) < 0.7).float() - 1  # mostly bright (emulsion scratched off)
    out = video.clone()
    for i in torch.nonzero(active).flatten().tolist():
        clip, frame = divmod(i // count, t)
        rows, cols = slice(int(y0[i]), int(y0[i] + length[i])), slice(int(x0[i]), int(x0[i] + width[i]))
        patch = out[clip, :, frame, rows, cols]
        out[clip, :, frame, rows, cols] = patch * (1 - float(alpha[i])) + float(colour[i] * alpha[i])
    return out


def dust(
    video: torch.Tensor, count: int, generator: torch.Generator | None = None, radius: tuple[float, float] = (0.7, 2.5)
) -> torch.Tensor:
    """Dust and dirt: up to `count` small soft blobs per frame, mostly dark, at random places, sizes and shapes."""
    b, _, t, h, w = video.shape
    if count <= 0:
        return video
    n = b * t * count
    active = (torch.randint(0, count + 1, (b * t, 1), generator=generator) > torch.arange(count)).reshape(-1)
    cy, cx = torch.rand(n, generator=generator) * h, torch.rand(n, generator=generator) * w
    r = radius[0] + (radius[1] - radius[0]) * torch.rand(n, generator=generator)
    aspect = 0.5 + torch.rand(n, generator=generator)  # an ellipse with a random aspect and orientation
    angle = torch.rand(n, generator=generator) * math.pi
    colour = 1 - 2 * (torch.rand(n, generator=generator) < 0.7).float()  # mostly dark (dirt on the print)
    out = video.clone()
    reach = int(math.ceil(2 * radius[1] * 1.5)) + 1
    for i in torch.nonzero(active).flatten().tolist():
        clip, frame = divmod(i // count, t)
        y0, y1 = max(0, int(cy[i]) - reach), min(h, int(cy[i]) + reach + 1)
        x0, x1 = max(0, int(cx[i]) - reach), min(w, int(cx[i]) + reach + 1)
        dy = torch.arange(y0, y1).view(-1, 1) + 0.5 - cy[i]
        dx = torch.arange(x0, x1).view(1, -1) + 0.5 - cx[i]
        c, s = math.cos(angle[i]), math.sin(angle[i])
        d2 = ((dx * c + dy * s) / r[i]) ** 2 + ((-dx * s + dy * c) * aspect[i] / r[i]) ** 2
        alpha = torch.sigmoid((1 - d2) * 4).to(video)
        patch = out[clip, :, frame, y0:y1, x0:x1]
        out[clip, :, frame, y0:y1, x0:x1] = patch * (1 - alpha) + float(colour[i]) * alpha
    return out
