"""Per-clip pipelines: HQ clip (3, T, H, W) in [-1, 1] -> LQ. Recipes pick one by class_path.

RealWorldDegradation takes its ~45 options as one RealWorldOptions (a dataclass, which jsonargparse reads from
recipes) or the name of a preset in PRESETS; recipes/degradations/*.yaml spell each preset out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

from litevsr.data.degradations import functions as D
from litevsr.errors import LiteVSRError


class Degradation:
    """How LQ is made from HQ: `degradation(hq (3, T, H, W) in [-1, 1], scale, generator) -> lq (3, T, H/s, W/s)`.

    Subclasses are deterministic given the generator, so validation pairs are fixed per sample key.
    """

    def __call__(self, hq: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class SimpleDegradation(Degradation):
    def __init__(self, blur_sigma: tuple[float, float] = (0.2, 1.5), noise_sigma: tuple[float, float] = (0.0, 5.0)):
        """Gaussian blur, bicubic downscale, Gaussian noise, 8-bit rounding; one draw per clip.

        Args:
            blur_sigma: Range of the Gaussian blur's sigma (HQ pixels); (0, 0) with noise_sigma (0, 0) is plain bicubic.
            noise_sigma: Range of the noise sigma, in 8-bit levels.
        """
        self.blur_sigma, self.noise_sigma = tuple(blur_sigma), tuple(noise_sigma)

    def __call__(self, hq: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
        """hq (3, T, H, W) in [-1, 1] -> lq (3, T, H/scale, W/scale)."""
        r = _Random(generator)
        sigma = r.uniform(*self.blur_sigma)
        lq = hq[None] if sigma <= 0 else D.blur(hq[None], D.gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma))
        lq = D.resize_video(lq, (hq.shape[-2] // scale, hq.shape[-1] // scale))
        return D.quantize(D.gaussian_noise(lq, r.uniform(*self.noise_sigma), generator))[0]


class MixedDegradation(Degradation):
    def __init__(self, degradations: list[Degradation], weights: list[float] | None = None):
        """One of several degradations per clip, drawn with `weights` (default: equal), e.g. plain bicubic LQ and
        RealWorldDegradation together, so one adapter serves clean and damaged inputs."""
        if not degradations:
            raise LiteVSRError("MixedDegradation needs at least one degradation")
        weights = [1.0] * len(degradations) if weights is None else list(weights)
        if len(weights) != len(degradations) or min(weights) < 0 or sum(weights) <= 0:
            raise LiteVSRError(f"MixedDegradation needs one non-negative weight per degradation, got {weights}")
        self.degradations, self.weights = list(degradations), torch.tensor(weights, dtype=torch.float64)

    def __call__(self, hq: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
        pick = int(torch.multinomial(self.weights, 1, generator=generator))
        return self.degradations[pick](hq, scale, generator)


# ------------------------------------------------------------------------------------ second-order, per clip

KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_DIRECTIONS = ("up", "down", "keep")


def _option(
    default, check: str, low: float = 0, above: bool = False, high: float = math.inf, among: tuple[str, ...] = ()
):
    """A field of RealWorldOptions and how its value is checked.

    check: "range" (low <= a <= b <= high, or low < a with `above`), "prob" (in [0, 1]), "step" (>= 0),
    "among" (a non-empty subset of `among`) or "weights" (non-negative, not all zero: a dict whose keys are
    among `among`, or one weight for each of `among`, in its order).
    """
    kind = {"default_factory": lambda: dict(default)} if isinstance(default, dict) else {"default": default}
    return field(**kind, metadata={"check": check, "low": low, "above": above, "high": high, "among": among})


@dataclass(frozen=True)
class RealWorldOptions:
    """Options of RealWorldDegradation; the defaults are the realesrgan preset (generic degraded web video).

    Ranges are (low, high), each clip draws once in them; sizes of the old-film artefacts are in LQ pixels; noise
    is in 8-bit levels. Every value is checked when the options are made (one-line LiteVSRError naming it).

    Args:
        kernel_size: Range of odd blur-kernel sizes.
        kernel_probs: Weights of the kernel kinds iso, aniso, generalized_iso/aniso, plateau_iso/aniso.
        generalized_beta: Shape range of generalized Gaussian kernels (1 = Gaussian; half the draws below 1).
        plateau_beta: Shape range of plateau kernels.
        resize_modes: Interpolations drawn from: area, bilinear, bicubic, nearest.
        gaussian_noise_prob: Probability of Gaussian rather than Poisson noise, per stage.
        gray_noise_prob: Probability that the noise is shared by the channels, per stage.
        blur_prob: Probability of the stage-1 blur.
        blur_sigma: Stage-1 kernel sigma range (pixels).
        sinc_prob: Probability that the stage-1 kernel is a sinc (ringing) instead.
        resize_probs: Stage-1 weights of up, down, keep.
        resize_range: Stage-1 scale range, relative to the HQ size.
        noise_sigma: Stage-1 Gaussian noise sigma range (8-bit levels).
        poisson_scale: Stage-1 Poisson noise scale range.
        jpeg_quality: Stage-1 JPEG quality range.
        second_blur_prob: Probability of the stage-2 blur.
        second_blur_sigma: Stage-2 kernel sigma range (pixels).
        second_sinc_prob: Probability that the stage-2 kernel is a sinc.
        second_resize_probs: Stage-2 weights of up, down, keep.
        second_resize_range: Stage-2 scale range, relative to the LQ (target) size.
        second_noise_sigma: Stage-2 Gaussian noise sigma range (8-bit levels).
        second_poisson_scale: Stage-2 Poisson noise scale range.
        second_jpeg_quality: Stage-2 JPEG quality range.
        final_sinc_prob: Probability of the sinc filter that follows the final resize.
        drift_sigma: Largest per-frame change of the blur sigmas.
        drift_angle: Largest per-frame change of the blur kernel angle (radians).
        drift_noise: Largest per-frame change of the Gaussian noise sigma (8-bit levels).
        drift_poisson: Largest per-frame change of the Poisson noise scale.
        drift_quality: Largest per-frame change of the JPEG quality.
        codec_prob: Probability of a video-codec round trip (PyAV, in memory) at the end.
        codecs: Encoders drawn from: libx264, h264 (libx264 in PyAV), mpeg4.
        codec_bitrate: Bitrate range in bits/s at 25 fps, for the LQ frame size.
        posterize_prob: Probability of colour quantisation (banding), applied after the stage-2 noise.
        posterize_levels: Range of the number of levels per channel.
        grain_prob: Probability of film grain on the source.
        grain_strength: Grain standard deviation range (8-bit levels).
        grain_size: Grain clump size range (LQ pixels).
        flicker_prob: Probability of per-frame exposure flicker on the source.
        flicker_strength: Largest relative brightness change of a frame.
        scratch_prob: Probability of vertical film scratches on the source.
        scratch_count: Most scratches per frame.
        dust_prob: Probability of dust and dirt blobs on the source.
        dust_count: Most dust blobs per frame.
    """

    kernel_size: tuple[int, int] = _option((7, 21), "range")
    kernel_probs: dict[str, float] = _option(
        dict(zip(KERNEL_KINDS, (0.45, 0.25, 0.12, 0.03, 0.12, 0.03))), "weights", among=KERNEL_KINDS
    )
    generalized_beta: tuple[float, float] = _option((0.5, 4.0), "range")
    plateau_beta: tuple[float, float] = _option((1.0, 2.0), "range")
    resize_modes: tuple[str, ...] = _option(("area", "bilinear", "bicubic"), "among", among=D.RESIZE_MODES)
    gaussian_noise_prob: float = _option(0.5, "prob")
    gray_noise_prob: float = _option(0.4, "prob")
    # stage 1
    blur_prob: float = _option(1.0, "prob")
    blur_sigma: tuple[float, float] = _option((0.2, 3.0), "range", above=True)
    sinc_prob: float = _option(0.1, "prob")
    resize_probs: tuple[float, float, float] = _option((0.2, 0.7, 0.1), "weights", among=RESIZE_DIRECTIONS)
    resize_range: tuple[float, float] = _option((0.15, 1.5), "range", above=True)
    noise_sigma: tuple[float, float] = _option((1.0, 30.0), "range")
    poisson_scale: tuple[float, float] = _option((0.05, 3.0), "range")
    jpeg_quality: tuple[float, float] = _option((30.0, 95.0), "range", high=100)
    # stage 2
    second_blur_prob: float = _option(0.8, "prob")
    second_blur_sigma: tuple[float, float] = _option((0.2, 1.5), "range", above=True)
    second_sinc_prob: float = _option(0.1, "prob")
    second_resize_probs: tuple[float, float, float] = _option((0.3, 0.4, 0.3), "weights", among=RESIZE_DIRECTIONS)
    second_resize_range: tuple[float, float] = _option((0.3, 1.2), "range", above=True)
    second_noise_sigma: tuple[float, float] = _option((1.0, 25.0), "range")
    second_poisson_scale: tuple[float, float] = _option((0.05, 2.5), "range")
    second_jpeg_quality: tuple[float, float] = _option((30.0, 95.0), "range", high=100)
    final_sinc_prob: float = _option(0.8, "prob")
    # video: per-frame random-walk steps, then a real codec
    drift_sigma: float = _option(0.02, "step")
    drift_angle: float = _option(0.314, "step")
    drift_noise: float = _option(0.1, "step")
    drift_poisson: float = _option(0.005, "step")
    drift_quality: float = _option(3.0, "step")
    codec_prob: float = _option(1.0, "prob")
    codecs: tuple[str, ...] = _option(("libx264", "h264", "mpeg4"), "among", among=D.CODECS)
    codec_bitrate: tuple[float, float] = _option((1e4, 1e5), "range")
    # extras, all off by default
    posterize_prob: float = _option(0.0, "prob")
    posterize_levels: tuple[int, int] = _option((16, 64), "range", low=2)
    grain_prob: float = _option(0.0, "prob")
    grain_strength: tuple[float, float] = _option((2.0, 10.0), "range")
    grain_size: tuple[float, float] = _option((0.5, 1.5), "range")
    flicker_prob: float = _option(0.0, "prob")
    flicker_strength: float = _option(0.05, "step")
    scratch_prob: float = _option(0.0, "prob")
    scratch_count: int = _option(3, "step")
    dust_prob: float = _option(0.0, "prob")
    dust_count: int = _option(8, "step")

    def __post_init__(self):
        for f in fields(self):
            value, limits = getattr(self, f.name), f.metadata
            if isinstance(value, list):  # from YAML or Python lists: stored as tuples, so options compare equal
                object.__setattr__(self, f.name, value := tuple(value))
            problem = _problem(value, limits)
            if problem:
                raise LiteVSRError(f"RealWorldOptions: {f.name} {problem}, got {_shown(value)}")
        if not any(k % 2 for k in range(self.kernel_size[0], self.kernel_size[1] + 1)):
            raise LiteVSRError(f"RealWorldOptions: kernel_size {list(self.kernel_size)} holds no odd size")


def _problem(value, c: dict) -> str | None:
    """What is wrong with an option's value by its field's check (see _option), or None."""
    if c["check"] == "range":
        low_ok = len(value) == 2 and (value[0] > c["low"] if c["above"] else value[0] >= c["low"])
        if not (low_ok and value[0] <= value[1] <= c["high"]):
            high = "" if c["high"] == math.inf else f" <= {c['high']}"
            return f"must be a range (low, high) with {c['low']} {'<' if c['above'] else '<='} low <= high{high}"
    elif c["check"] == "prob" and not 0 <= value <= 1:
        return "must be a probability in [0, 1]"
    elif c["check"] == "step" and value < 0:
        return "must be >= 0"
    elif c["check"] == "among" and (not value or set(value) - set(c["among"])):
        return f"must be among {', '.join(c['among'])}"
    elif c["check"] == "weights":
        weights = list(value.values()) if isinstance(value, dict) else list(value)
        keys_ok = set(value) <= set(c["among"]) if isinstance(value, dict) else len(weights) == len(c["among"])
        if not (keys_ok and weights and min(weights) >= 0 and sum(weights) > 0):
            return f"needs non-negative weights over {', '.join(c['among'])}, not all zero"
    return None


def _shown(value):
    return list(value) if isinstance(value, tuple) else value


PRESETS: dict[str, RealWorldOptions] = {
    # Real-ESRGAN second order + RealBasicVSR drift and codec: generic degraded web video.
    "realesrgan": RealWorldOptions(),
    # Anime/cartoons: line art must survive, so blur is mostly small isotropic kernels; little noise (cels are
    # clean); colour quantisation/banding in flat gradients; ringing from old upscalers (sinc); a heavier codec.
    "anime": RealWorldOptions(
        kernel_size=(7, 15),
        kernel_probs={"iso": 0.6, "aniso": 0.15, "generalized_iso": 0.15, "plateau_iso": 0.1},
        blur_sigma=(0.2, 1.5),
        sinc_prob=0.2,
        resize_probs=(0.1, 0.8, 0.1),
        resize_range=(0.4, 1.2),
        gaussian_noise_prob=0.8,
        gray_noise_prob=0.6,
        noise_sigma=(0.5, 6.0),
        poisson_scale=(0.05, 0.5),
        jpeg_quality=(40.0, 95.0),
        second_blur_prob=0.5,
        second_blur_sigma=(0.2, 1.0),
        second_sinc_prob=0.2,
        second_resize_range=(0.6, 1.1),
        second_noise_sigma=(0.5, 4.0),
        second_poisson_scale=(0.05, 0.4),
        second_jpeg_quality=(50.0, 95.0),
        posterize_prob=0.4,
        posterize_levels=(12, 48),
        codec_prob=1.0,
        codec_bitrate=(6e3, 6e4),
    ),
    # Scanned old film: soft optics and printing (wider, rounder kernels), film grain (luminance), exposure
    # flicker between frames, vertical scratches and dust, then a moderate codec from the digitisation.
    "old_film": RealWorldOptions(
        kernel_probs={"iso": 0.5, "aniso": 0.2, "generalized_iso": 0.15, "plateau_iso": 0.15},
        blur_sigma=(0.8, 3.0),
        sinc_prob=0.05,
        gaussian_noise_prob=0.7,
        gray_noise_prob=0.8,
        noise_sigma=(1.0, 10.0),
        second_blur_prob=0.9,
        second_blur_sigma=(0.5, 1.5),
        second_sinc_prob=0.05,
        second_noise_sigma=(1.0, 8.0),
        jpeg_quality=(50.0, 95.0),
        second_jpeg_quality=(50.0, 95.0),
        grain_prob=0.9,
        grain_strength=(4.0, 16.0),
        grain_size=(0.3, 1.0),
        flicker_prob=0.8,
        flicker_strength=0.08,
        scratch_prob=0.6,
        scratch_count=3,
        dust_prob=0.8,
        dust_count=8,
        codec_prob=0.6,
        codec_bitrate=(2e4, 1e5),
    ),
    # A phone clip shared at a low bitrate: mild lens blur, colour sensor noise (mostly shot noise), light JPEG,
    # and a strong low-bitrate H.264 encode that dominates the artefacts.
    "phone_lowbitrate": RealWorldOptions(
        kernel_probs={"iso": 0.5, "aniso": 0.3, "generalized_iso": 0.1, "generalized_aniso": 0.1},
        blur_sigma=(0.2, 1.2),
        sinc_prob=0.0,
        resize_probs=(0.1, 0.8, 0.1),
        resize_range=(0.3, 1.1),
        gaussian_noise_prob=0.3,
        gray_noise_prob=0.1,
        noise_sigma=(2.0, 12.0),
        poisson_scale=(0.5, 3.0),
        jpeg_quality=(70.0, 95.0),
        second_blur_prob=0.5,
        second_blur_sigma=(0.2, 0.8),
        second_sinc_prob=0.0,
        second_poisson_scale=(0.2, 1.5),
        second_jpeg_quality=(70.0, 95.0),
        codec_prob=1.0,
        codecs=("libx264",),
        codec_bitrate=(5e3, 3e4),
    ),
}


def preset_options(name: str, **changes) -> RealWorldOptions:
    """The options of preset `name` with `changes` (field=value) applied, checked again."""
    if name not in PRESETS:
        raise LiteVSRError(f"unknown degradation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **changes)


class RealWorldDegradation(Degradation):
    def __init__(self, options: RealWorldOptions | str = "realesrgan"):
        """Real-ESRGAN second-order degradation with RealBasicVSR video extensions, one draw per clip.

        Order: [old-film source artefacts] -> stage 1 (blur, resize, noise, JPEG) -> stage 2 (blur p, resize,
        noise, [posterize], then 50/50 [resize to target + sinc] -> JPEG or JPEG -> [resize + sinc]) -> video codec
        -> clamp and 8-bit rounding. Blur, noise and JPEG parameters are drawn once per clip and drift frame to frame
        by a bounded random walk.

        Args:
            options: A preset name (realesrgan: generic web video, anime, old_film, phone_lowbitrate) or the options
                themselves; options left out of a recipe's block take the realesrgan values, so to change a few
                values of another preset start from its file in recipes/degradations/.
        """
        self.options = preset_options(options) if isinstance(options, str) else options

    def __repr__(self) -> str:
        preset = next((name for name, options in PRESETS.items() if options == self.options), None)
        return f"{type(self).__name__}(preset={preset!r})" if preset else f"{type(self).__name__}({self.options})"

    # -------------------------------------------------------------------------------------------- sampling

    def sample_params(self, frames: int, generator: torch.Generator) -> dict:
        """Draw one clip's degradation: a nested dict of choices and per-frame (T,) parameter tracks."""
        o, r = self.options, _Random(generator)
        return {
            "source": {
                "flicker": (
                    1 + o.flicker_strength * (2 * torch.rand(frames, generator=generator) - 1)
                    if r.event(o.flicker_prob)
                    else None
                ),
                "grain": (
                    {"strength": r.uniform(*o.grain_strength), "size": r.uniform(*o.grain_size)}
                    if r.event(o.grain_prob)
                    else None
                ),
                "scratches": o.scratch_count if r.event(o.scratch_prob) else 0,
                "dust": o.dust_count if r.event(o.dust_prob) else 0,
            },
            "stage1": self._sample_stage(r, frames, ""),
            "stage2": {
                **self._sample_stage(r, frames, "second_"),
                "posterize": int(round(r.uniform(*o.posterize_levels))) if r.event(o.posterize_prob) else None,
                "jpeg_first": r.event(0.5),
                "final_mode": r.choice(o.resize_modes),
                "final_sinc": self._sample_sinc(r) if r.event(o.final_sinc_prob) else None,
            },
            "codec": (
                {"codec": r.choice(o.codecs), "bitrate": r.uniform(*o.codec_bitrate)} if r.event(o.codec_prob) else None
            ),
        }

    def _sample_stage(self, r: _Random, t: int, prefix: str) -> dict:
        def o(name: str):  # the stage's own value (second_blur_prob, ...) where there is one, else the shared one
            return getattr(self.options, prefix + name, getattr(self.options, name))

        blur = None
        if r.event(o("blur_prob")):
            blur = self._sample_sinc(r) if r.event(o("sinc_prob")) else self._sample_kernel(r, t, o("blur_sigma"))
        direction = r.choice(RESIZE_DIRECTIONS, o("resize_probs"))
        lo, hi = o("resize_range")
        factor = {"up": r.uniform(1, max(1, hi)), "down": r.uniform(min(1, lo), 1), "keep": 1.0}[direction]
        if r.event(o("gaussian_noise_prob")):
            noise = {"kind": "gaussian", "level": r.walk(t, *o("noise_sigma"), o("drift_noise"))}
        else:
            noise = {"kind": "poisson", "level": r.walk(t, *o("poisson_scale"), o("drift_poisson"))}
        noise["gray"] = r.event(o("gray_noise_prob"))
        return {
            "blur": blur,
            "resize": {"factor": factor, "mode": r.choice(o("resize_modes"))},
            "noise": noise,
            "jpeg": r.walk(t, *o("jpeg_quality"), o("drift_quality")),
        }

    def _kernel_size(self, r: _Random) -> int:
        low, high = self.options.kernel_size
        return r.choice([k for k in range(low, high + 1) if k % 2])

    def _sample_kernel(self, r: _Random, t: int, sigma: tuple[float, float]) -> dict:
        o = self.options
        kind = r.choice(list(o.kernel_probs), list(o.kernel_probs.values()))
        step = o.drift_sigma
        sigma_x = r.walk(t, *sigma, step)
        if kind.endswith("aniso"):
            sigma_y, theta = r.walk(t, *sigma, step), r.walk(t, -math.pi, math.pi, o.drift_angle)
        else:
            sigma_y, theta = sigma_x, torch.zeros(t)
        beta = 1.0
        if kind.startswith("generalized"):  # as many draws with heavier tails (beta < 1) as with flatter tops
            lo, hi = o.generalized_beta
            beta = r.uniform(*((lo, 1.0) if r.event(0.5) else (1.0, hi))) if lo < 1 < hi else r.uniform(lo, hi)
        elif kind.startswith("plateau"):
            beta = r.uniform(*o.plateau_beta)
        return {
            "kind": kind,
            "size": self._kernel_size(r),
            "sigma_x": sigma_x,
            "sigma_y": sigma_y,
            "theta": theta,
            "beta": beta,
        }

    def _sample_sinc(self, r: _Random) -> dict:
        size = self._kernel_size(r)
        omega = r.uniform(math.pi / 3, math.pi) if size < 13 else r.uniform(math.pi / 5, math.pi)
        return {"kind": "sinc", "size": size, "omega": omega}

    # -------------------------------------------------------------------------------------------- applying

    def __call__(self, hq: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
        """hq (3, T, H, W) in [-1, 1] -> lq (3, T, H // scale, W // scale), 8-bit rounded."""
        return self.apply(hq, scale, self.sample_params(hq.shape[1], generator), generator)

    def apply(self, hq: torch.Tensor, scale: int, params: dict, generator: torch.Generator) -> torch.Tensor:
        """Degrade `hq` with drawn `params` (see sample_params); `generator` draws the noise itself."""
        h, w = hq.shape[-2:]
        target = (max(1, h // scale), max(1, w // scale))
        x = self._source(hq[None].float(), params["source"], scale, generator)
        s1, s2 = params["stage1"], params["stage2"]
        x = self._blur(x, s1["blur"])
        x = self._resize(x, (h, w), s1["resize"])
        x = self._noise(x, s1["noise"], generator)
        x = D.jpeg(x, s1["jpeg"])
        x = self._blur(x, s2["blur"])
        x = self._resize(x, target, s2["resize"])
        x = self._noise(x, s2["noise"], generator)
        if s2["posterize"]:
            x = D.posterize(x, s2["posterize"])
        if s2["jpeg_first"]:
            x = self._blur(D.resize_video(D.jpeg(x, s2["jpeg"]), target, s2["final_mode"]), s2["final_sinc"])
        else:
            x = D.jpeg(self._blur(D.resize_video(x, target, s2["final_mode"]), s2["final_sinc"]), s2["jpeg"])
        if params["codec"]:
            x = D.video_codec(x, params["codec"]["codec"], params["codec"]["bitrate"])
        return D.quantize(x)[0].to(hq.dtype)

    @staticmethod
    def _source(x: torch.Tensor, p: dict, scale: int, generator: torch.Generator) -> torch.Tensor:
        if p["flicker"] is not None:
            x = D.flicker(x, p["flicker"])
        if p["grain"]:
            x = D.film_grain(x, p["grain"]["strength"], generator, grain_size=p["grain"]["size"] * scale)
        x = D.scratches(x, p["scratches"], generator, max_width=max(1, scale))
        return D.dust(x, p["dust"], generator, radius=(0.7 * scale, 2.5 * scale))

    @staticmethod
    def _blur(x: torch.Tensor, p: dict | None) -> torch.Tensor:
        if p is None:
            return x
        if p["kind"] == "sinc":
            return D.blur(x, D.sinc_kernel(p["size"], p["omega"]))
        if p["kind"] == "iso":  # the same kernel, separably
            return D.separable_blur(x, D.gaussian_kernel_1d(p["size"], p["sigma_x"]))
        return D.blur(x, D.blur_kernel(p["kind"], p["size"], p["sigma_x"], p["sigma_y"], p["theta"], p["beta"]))

    @staticmethod
    def _resize(x: torch.Tensor, reference: tuple[int, int], p: dict) -> torch.Tensor:
        size = tuple(max(1, int(n * p["factor"])) for n in reference)
        return x if size == tuple(x.shape[-2:]) else D.resize_video(x, size, p["mode"])

    @staticmethod
    def _noise(x: torch.Tensor, p: dict, generator: torch.Generator) -> torch.Tensor:
        if p["kind"] == "gaussian":
            return D.gaussian_noise(x, p["level"], generator, gray=p["gray"])
        return D.poisson_noise(x, p["level"], generator, gray=p["gray"])


class _Random:
    """Draws from one torch.Generator: the only source of randomness of a pipeline."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.generator))

    def event(self, p: float) -> bool:
        return float(torch.rand((), generator=self.generator)) < p

    def choice(self, options: list, weights: list[float] | None = None):
        weights = torch.ones(len(options)) if weights is None else torch.as_tensor(weights, dtype=torch.float)
        return options[int(torch.multinomial(weights, 1, generator=self.generator))]

    def walk(self, t: int, lo: float, hi: float, step: float) -> torch.Tensor:
        """A (t,) track: a uniform start in [lo, hi], then steps in [-step, step], kept inside [lo, hi]."""
        track = [self.uniform(lo, hi)]
        for delta in ((2 * torch.rand(t - 1, generator=self.generator) - 1) * step).tolist():
            track.append(min(max(track[-1] + delta, lo), hi))
        return torch.tensor(track, dtype=torch.float64)
