import pytest
import torch

from litevsr import flow
from litevsr.pipeline import Sampling
from litevsr.schedulers import make_scheduler, set_schedule


def exact_velocity(x0, eps):
    return lambda x, sigma: flow.velocity_target(x0, eps)


def integrate(velocity_fn, x, steps, shift=1.0, sigma_start=1.0, scheduler="euler"):
    """The pipeline's loop (LiteVSRPipeline.sample_latents) without a backbone: the scheduler's steps."""
    sampler = make_scheduler(scheduler, shift)
    set_schedule(sampler, steps, sigma_start)
    for t in sampler.timesteps:
        x = sampler.step(velocity_fn(x, t / 1000), t, x, return_dict=False)[0]
    return x


@pytest.mark.parametrize("scheduler", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_the_schedulers_with_exact_velocity_reach_x0(steps, shift, scheduler):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 4, 3, 5, 5, generator=g)
    out = integrate(exact_velocity(x0, eps), eps, steps, shift, scheduler=scheduler)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_sampling_from_noised_start_reaches_x0():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(1, 4, 1, 4, 4, generator=g), torch.randn(1, 4, 1, 4, 4, generator=g)
    start = flow.start_latents(x0, eps, 0.5)
    torch.testing.assert_close(start, 0.5 * x0 + 0.5 * eps)
    out = integrate(exact_velocity(x0, eps), start, 3, 2.0, sigma_start=0.5)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_interpolation_endpoints_and_target():
    x0, eps = torch.full((1, 2), 3.0), torch.full((1, 2), -1.0)
    assert torch.equal(flow.interpolate(x0, eps, torch.tensor([0.0])), x0)
    assert torch.equal(flow.interpolate(x0, eps, torch.tensor([1.0])), eps)
    # d x_sigma / d sigma is the velocity target
    assert torch.equal(flow.velocity_target(x0, eps), eps - x0)
    torch.testing.assert_close(
        flow.predict_x0(flow.interpolate(x0, eps, torch.tensor([0.3])), eps - x0, torch.tensor([0.3])), x0
    )


def test_schedule_endpoints_and_shift():
    def sigmas(steps, shift=1.0, sigma_start=1.0):
        scheduler = make_scheduler(shift=shift)
        set_schedule(scheduler, steps, sigma_start)
        return scheduler.sigmas

    s = sigmas(4, shift=3.0, sigma_start=0.8)
    assert s.shape == (5,) and s[0].item() == pytest.approx(0.8) and s[-1].item() == 0.0
    assert torch.all(s[1:] < s[:-1])
    plain = sigmas(4)
    torch.testing.assert_close(plain, torch.linspace(1, 0, 5))
    assert torch.all(sigmas(4, shift=3.0)[1:-1] > plain[1:-1])  # shift > 1 lingers at high noise
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Sampling(steps=0)
    with pytest.raises(ValueError, match="sigma_start must be in"):
        Sampling(sigma_start=1.5)


def test_logit_normal_sigmas():
    g = torch.Generator().manual_seed(0)
    s = flow.sample_sigmas(20000, generator=g)
    assert 0 < s.min() and s.max() < 1
    assert s.mean().item() == pytest.approx(0.5, abs=0.01)
    shifted = flow.sample_sigmas(20000, shift=3.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(shifted, flow.shift_sigma(s, 3.0))
    assert shifted.mean() > s.mean() + 0.1
    torch.testing.assert_close(flow.unshift_sigma(shifted, 3.0), s)


def test_landing_velocity_reaches_x0_in_one_step():
    g = torch.Generator().manual_seed(2)
    x0, cond, eps = (torch.randn(1, 4, 2, 3, 3, generator=g) for _ in range(3))
    start = flow.start_latents(cond, eps, 0.4)
    v = flow.landing_velocity(start, x0, 0.4)
    out = integrate(lambda x, s: v, start, 1, sigma_start=0.4)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(flow.landing_velocity(eps, x0, 1.0), flow.velocity_target(x0, eps))
