"""DDPM and flow matching against the math: noise schedules, q(x_t | x0), the samplers driven by exact
(analytic) denoisers of data sets whose optimum is known, classifier-free guidance, the trajectory
capability and the per-time loss logs. What every model must do is in test_contract.py."""
import math

import pytest
import torch
from torch import nn

from genlab import ConfigError
from genlab.models import MODELS, HasLatents, HasSamplingKnobs, HasTrajectory, StepContext, build_model
from genlab.models.base import sample_prior
from genlab.models.ddpm import DDPM, make_betas, timestep_sequence
from genlab.models.denoising import bucket_logs, stratified_uniform
from genlab.models.flow import TIME_SCALE
from genlab.models.nn.unet import UNet

FAMILIES = ["ddpm", "flow"]


def tiny(name, **fields):
    torch.manual_seed(0)
    return build_model(name, dict(MODELS[name].tiny, **dict(dict(channels=1, image_size=28), **fields)))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batches(batch=12):
    g = gen(1)
    return lambda: (torch.rand(batch, 1, 28, 28, generator=g) * 2 - 1, torch.randint(10, (batch,), generator=g))


class Oracle(nn.Module):
    """A network given as a function of (x, t): the exact eps or velocity of a known data distribution."""

    def __init__(self, function):
        super().__init__()
        self.function, self.null_class = function, 0
        self.anchor = nn.Parameter(torch.zeros(()))          # the model finds its device by its parameters

    def forward(self, x, t, y=None):
        return self.function(x, t) + 0 * self.anchor          # a graph, so that a training step can run


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alpha_bar_falls_from_one_to_nearly_zero(schedule):
    betas = make_betas(schedule, 1000)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert betas.shape == (1000,) and (betas > 0).all() and (betas <= 0.999).all()
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()                         # strictly monotone
    assert alpha_bar[0] > 0.999 and alpha_bar[-1] < 1e-4


def test_linear_schedule_endpoints_and_cosine_closed_form():
    linear = make_betas("linear", 1000)
    assert linear[0].item() == pytest.approx(1e-4) and linear[-1].item() == pytest.approx(0.02)
    alpha_bar = torch.cumprod(1 - make_betas("cosine", 1000), 0)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in (0, 250, 500, 900):                                           # abar_t = f(t + 1) / f(0), 0-based t
        assert alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert alpha_bar[499].item() == pytest.approx(0.5, abs=0.02)          # the cosine's midpoint


def test_q_sample_has_the_moments_of_eq_4():
    model = tiny("ddpm", timesteps=1000)
    x0 = torch.full((20000, 1, 28, 28), 0.5)
    for t in (0, 300, 999):
        timesteps = torch.full((20000,), t)
        x_t = model.q_sample(x0, timesteps, torch.randn(x0.shape, generator=gen(t)))
        abar = model.alpha_bar_host[t]
        assert x_t.mean().item() == pytest.approx(math.sqrt(abar) * 0.5, abs=2e-3)
        assert x_t.var().item() == pytest.approx(1 - abar, rel=2e-3, abs=1e-6)


def test_timestep_sequences_start_at_T_minus_1_and_descend_evenly():
    assert timestep_sequence(1000, 1000) == list(range(999, -1, -1))
    assert timestep_sequence(1, 1000) == [999]
    assert timestep_sequence(4, 1000) == [999, 749, 499, 249]
    assert timestep_sequence(5000, 50) == list(range(49, -1, -1))          # capped at T


# ---------------------------------------------------------------- samplers with exact denoisers
def ddpm_oracle_for_gaussian(model, mean, std):
    """eps*(x_t, t) of data N(mean, std^2) per pixel, from E[x0 | x_t] = mean + a std^2 / (a^2 std^2 + b^2)
    (x_t - a mean) with a = sqrt(abar_t), b = sqrt(1 - abar_t); or v* = a eps* - b E[x0 | x_t] for a model
    that predicts v."""
    alpha_bar = model.alpha_bar.double()

    def output(x, t):
        abar = alpha_bar[t.long()].view(-1, 1, 1, 1)
        a, b = abar.sqrt(), (1 - abar).sqrt()
        x0 = mean + a * std ** 2 / (a ** 2 * std ** 2 + b ** 2) * (x - a * mean)
        eps = (x - a * x0) / b
        return (eps if model.config.prediction == "eps" else a * eps - b * x0).float()
    return Oracle(output)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_ddpm_samplers_with_the_exact_eps_recover_a_single_image(sampler, prediction):
    model = tiny("ddpm", timesteps=1000, class_conditional=False, prediction=prediction).eval()
    image = torch.linspace(-0.9, 0.9, 28 * 28).view(1, 1, 28, 28)
    model.network = ddpm_oracle_for_gaussian(model, image, 0.0)            # data = that one image
    samples = model.sample(4, gen(), steps=10, sampler=sampler)
    torch.testing.assert_close(samples, image.expand(4, -1, -1, -1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_ddpm_samplers_with_the_exact_eps_and_all_T_steps_draw_the_data_distribution(sampler, prediction):
    """Data N(0.2, 0.2^2) per pixel: the sampled pixels have that mean and spread (784 x 64 draws)."""
    model = tiny("ddpm", timesteps=1000, class_conditional=False, clip_x0=False, prediction=prediction).eval()
    model.network = ddpm_oracle_for_gaussian(model, 0.2, 0.2)
    samples = model.sample(64, gen(), steps=1000, sampler=sampler)
    assert samples.mean().item() == pytest.approx(0.2, abs=0.005)
    # sigma^2 = beta~ is the lower bound of the reverse variance (Ho §3.2), so ancestral runs a little narrow
    assert samples.std().item() == pytest.approx(0.2, rel=0.02 if sampler == "ddim" else 0.04)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_v_target_reads_back_as_the_image_and_the_noise(schedule):
    """Salimans & Ho 2022, App. D: v = a eps - b x0 gives x0 = a x_t - b v and eps = b x_t + a v (a^2 + b^2 = 1),
    so a v-model's read-out equals an eps-model's for the same x_t, also at the noisiest step."""
    v_model = tiny("ddpm", timesteps=1000, schedule=schedule, prediction="v", clip_x0=False)
    eps_model = tiny("ddpm", timesteps=1000, schedule=schedule, prediction="eps", clip_x0=False)
    g = gen(4)
    x0, eps = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.randn(3, 1, 4, 4, generator=g)
    for step in (0, 500, 999):
        t = torch.full((3,), step)
        x_t, abar = v_model.q_sample(x0, t, eps), v_model.alpha_bar_host[step]
        x0_from_v, eps_from_v = v_model.predict_x0(x_t.double(), v_model.v_target(x0, t, eps).double(), abar)
        torch.testing.assert_close(x0_from_v.float(), x0, atol=1e-5, rtol=0)
        torch.testing.assert_close(eps_from_v.float(), eps, atol=1e-5, rtol=0)
        if step < 999:                  # eps-prediction divides by sqrt(abar) at t = T - 1: 0.006 linear, 5e-5 cosine
            x0_from_eps, _ = eps_model.predict_x0(x_t.double(), eps.double(), abar)
            torch.testing.assert_close(x0_from_eps.float(), x0, atol=1e-4, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_a_training_step_regresses_on_the_target_the_config_names(prediction):
    """Data = one image, so the exact eps (or v) at every x_t is known: the step's loss is 0 for the network
    that outputs the named target and large for the one that outputs the other."""
    image = torch.linspace(-0.9, 0.9, 28 * 28).view(1, 1, 28, 28)
    one_image = lambda: (image.expand(12, -1, -1, -1), torch.zeros(12, dtype=torch.long))   # noqa: E731
    losses = {}
    for oracle_of in ("eps", "v"):
        model = tiny("ddpm", timesteps=1000, class_conditional=False, prediction=prediction)
        model.network = ddpm_oracle_for_gaussian(tiny("ddpm", timesteps=1000, prediction=oracle_of), image, 0.0)
        ctx = StepContext(step=0, rng=gen(5))
        losses[oracle_of] = model.training_step(one_image, model.make_optimizers(), ctx)["loss/total"].item()
    other = "v" if prediction == "eps" else "eps"
    assert losses[prediction] < 1e-6 and losses[other] > 0.1


def test_ddim_with_eta_1_takes_the_ancestral_step():
    """Song et al. 2021 §4.1: eta = 1 gives q(x_prev | x_t, x0) of Ho eq. 6-7, mean and variance."""
    g = gen(3)
    x, x0, z = (torch.randn(5, 1, 4, 4, generator=g) for _ in range(3))
    abar, abar_prev = 0.3, 0.6
    eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
    sigma = math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
    torch.testing.assert_close(DDPM.ddim_step(x0, eps, abar_prev, sigma, z),
                               DDPM.posterior_step(x, x0, abar, abar_prev, z), atol=1e-5, rtol=1e-5)


def flow_oracle_for_gaussian(mean, std):
    """The marginal velocity E[x1 - x0 | x_t] for noise x0 ~ N(0, 1) and data x1 ~ N(mean, std^2) per pixel."""
    def velocity(x, t_scaled):
        t = (t_scaled / TIME_SCALE).double().view(-1, 1, 1, 1)
        gain = (t * std ** 2 - (1 - t)) / ((1 - t) ** 2 + t ** 2 * std ** 2)
        return (mean + gain * (x - t * mean)).float()
    return Oracle(velocity)


def test_flow_euler_with_the_exact_velocity_lands_on_a_single_image():
    model = tiny("flow", class_conditional=False).eval()
    image = torch.linspace(-0.9, 0.9, 28 * 28).view(1, 1, 28, 28)
    model.network = Oracle(lambda x, t: (image - x) / (1 - t.view(-1, 1, 1, 1) / TIME_SCALE))
    torch.testing.assert_close(model.sample(3, gen(), steps=7, sampler="euler"),
                               image.expand(3, -1, -1, -1), atol=1e-5, rtol=0)


def test_heun_is_more_accurate_than_euler_on_gaussian_to_gaussian():
    """The exact flow maps noise x0 to mean + std x0: Euler's error halves with twice the steps (first
    order), Heun's falls about four times (second order; its last step is Euler, a local error of the
    same order) and is far below Euler's at equal steps."""
    model = tiny("flow", class_conditional=False).eval()
    model.network = flow_oracle_for_gaussian(0.1, 0.2)
    noise = torch.randn(8, 1, 28, 28, generator=gen(4))
    exact = 0.1 + 0.2 * noise                                             # inside [-1, 1]: no clamping
    assert exact.abs().max() < 1
    error = {}
    for sampler in ("euler", "heun"):
        for steps in (8, 16, 32):
            path = model.trajectory(8, gen(), steps=steps, sampler=sampler, noise=noise)
            error[sampler, steps] = (path[-1][1] - exact).abs().max().item()
    assert error["heun", 16] < error["euler", 16] / 3 and error["heun", 32] < error["euler", 32] / 6
    assert 1.6 < error["euler", 8] / error["euler", 16] < 2.4
    assert error["heun", 8] / error["heun", 16] > 3 and error["heun", 16] / error["heun", 32] > 3.5


def test_heun_never_asks_the_network_at_the_data_end():
    """v at t = 1 is (x1 - x_t) / (1 - t) in the limit, never trained: Heun corrects every step but the
    last (Karras 2022, Alg. 1), so N steps are 2N - 1 evaluations, all at t < 1."""
    model = tiny("flow", class_conditional=False).eval()
    times = []
    model.network = Oracle(lambda x, t: times.extend((t / TIME_SCALE).tolist()) or torch.zeros_like(x))
    model.sample(2, gen(), steps=5, sampler="heun")
    assert len(times) == 2 * (2 * 5 - 1) and max(times) < 1 - 1e-6


# ---------------------------------------------------------------- classifier-free guidance
@pytest.mark.parametrize("name", FAMILIES)
def test_guidance_zero_is_the_conditional_prediction_and_batching_equals_two_calls(name):
    model = tiny(name)
    model.training_step(batches(), model.make_optimizers(), StepContext(0, gen(2)))   # a non-trivial class embedding
    model.eval()
    g = gen(5)
    x, t = torch.randn(4, 1, 28, 28, generator=g), torch.tensor([10.0, 200.0, 400.0, 45.0])
    y, null = torch.tensor([0, 3, 7, 9]), torch.full((4,), 10)
    net = model.network
    with torch.no_grad():
        conditional, unconditional = net(x, t, y), net(x, t, null)
        assert (conditional - unconditional).abs().mean() > 0.01 * conditional.abs().mean()
        torch.testing.assert_close(model.guided(net, x, t, y, 0.0), conditional)
        torch.testing.assert_close(model.guided(net, x, t, y, 2.5), 3.5 * conditional - 2.5 * unconditional,
                                   atol=1e-5, rtol=1e-5)


def test_training_drops_the_class_to_the_null_class_at_rate_p_uncond():
    model = tiny("ddpm", p_uncond=0.1)
    labels = torch.randint(10, (100000,), generator=gen())
    y = model.training_labels(labels, gen(1))
    dropped = y == model.network.null_class
    assert model.network.null_class == 10 and dropped.float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert torch.equal(y[~dropped], labels[~dropped])
    assert tiny("ddpm", class_conditional=False).training_labels(labels, gen(1)) is None


# ---------------------------------------------------------------- trajectories and knobs
@pytest.mark.parametrize("name,sampler", [("ddpm", "ddim"), ("flow", "euler"), ("flow", "heun")])
def test_the_same_noise_gives_the_same_images_whatever_the_guidance(name, sampler):
    model = tiny(name).eval()
    noise = torch.randn(3, 1, 28, 28, generator=gen(7))
    y = torch.tensor([1, 2, 3])
    first = model.trajectory(3, gen(1), y, steps=4, sampler=sampler, noise=noise)
    again = model.trajectory(3, gen(99), y, steps=4, sampler=sampler, noise=noise)   # another rng: no effect
    assert len(first) == 5 and [level for level, _, _ in first][0] == 1.0 and first[-1][0] == 0.0
    assert all(a[0] > b[0] for a, b in zip(first, first[1:]))               # from noise to image
    for (_, xa, pa), (_, xb, pb) in zip(first, again):
        assert torch.equal(xa, xb) and torch.equal(pa, pb)
    torch.testing.assert_close(first[0][1], noise)
    guided = model.trajectory(3, gen(1), steps=4, sampler=sampler, guidance=4.0)
    unguided = model.trajectory(3, gen(1), steps=4, sampler=sampler, guidance=0.0)
    assert torch.equal(guided[0][1], unguided[0][1])                        # the guidance redraws no noise
    assert not torch.equal(guided[-1][1], unguided[-1][1])


@pytest.mark.parametrize("name", FAMILIES)
def test_trajectory_ends_on_the_image_sample_gives(name):
    model = tiny(name).eval()
    path = model.trajectory(4, gen(3), steps=3)
    torch.testing.assert_close(path[-1][1], model.sample(4, gen(3), steps=3))
    assert all(x_t.shape == x0.shape == (4, 1, 28, 28) for _, x_t, x0 in path)


@pytest.mark.parametrize("name,sampler", [("ddpm", "ddim"), ("ddpm", "ancestral"), ("flow", "heun")])
def test_the_latent_is_the_starting_noise_and_generate_is_a_function_of_it(name, sampler):
    model = tiny(name, sampler=sampler).eval()
    assert isinstance(model, HasLatents)
    spec = model.latent_spec()
    assert spec.z_shape == (1, 28, 28) and spec.num_classes == 10 and not spec.is_vector
    latents = sample_prior(spec, 3, gen(2), "cpu")
    images = model.generate(**latents)
    assert torch.equal(images, model.generate(**latents))                   # stochastic samplers too
    if sampler != "ancestral":
        torch.testing.assert_close(images, model.trajectory(3, None, latents["y"], noise=latents["z"])[-1][1])


@pytest.mark.parametrize("name", FAMILIES)
def test_denoising_strip_rows_are_seeds_and_columns_are_steps(name):
    model = tiny(name, channels=3, image_size=32).eval()
    assert isinstance(model, HasTrajectory)
    strip = model.denoising_strip(gen(), seeds=2, points=8, steps=10)
    assert strip.shape == (3, 2 * 2 * 34, 8 * 34)
    assert strip.min() >= -1 and strip.max() <= 1
    final_x0_tile = strip[:, 34 + 1:2 * 34 - 1, 7 * 34 + 1:8 * 34 - 1]     # seed 0, x0_hat row, last column
    torch.testing.assert_close(final_x0_tile, model.trajectory(2, gen(), steps=10)[-1][2][0])


@pytest.mark.parametrize("name", FAMILIES)
def test_sampling_knobs_describe_what_sample_takes(name):
    model = tiny(name).eval()
    assert isinstance(model, HasSamplingKnobs)
    knobs = model.sampling_knobs()
    assert knobs["guidance"]["low"] == 0 and knobs["guidance"]["high"] == 8
    assert knobs["steps"]["low"] == 1 and knobs["steps"]["high"] == 100
    for sampler in knobs["sampler"]["choices"]:
        images = model.sample(2, gen(), steps=knobs["steps"]["low"], guidance=knobs["guidance"]["high"],
                              sampler=sampler)
        assert images.shape == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match="sampler must be one of"):
        model.sample(2, gen(), sampler="rk45")
    with pytest.raises(ConfigError, match="steps must be between 1 and 1000"):
        model.sample(2, gen(), steps=10 ** 9)
    for bad in ({"steps": "many"}, {"guidance": float("nan")}, {"steps": float("inf")}):
        with pytest.raises(ConfigError):
            model.sample(2, gen(), **bad)
    with pytest.raises(ConfigError, match="class indices in 0..9"):
        model.sample(2, gen(), y=torch.tensor([0, 10 ** 6]))
    assert "guidance" not in tiny(name, class_conditional=False).sampling_knobs()


# ---------------------------------------------------------------- losses and logs
@pytest.mark.parametrize("name", FAMILIES)
def test_loss_buckets_exist_are_finite_and_average_to_the_total(name):
    model = tiny(name)
    logs = model.training_step(batches(12), model.make_optimizers(), StepContext(0, gen(2)))
    assert {"loss/total", "loss/t_low", "loss/t_mid", "loss/t_high"} <= set(logs)
    assert all(math.isfinite(v.item()) for v in logs.values())
    buckets = [logs[f"loss/t_{b}"].item() for b in ("low", "mid", "high")]
    assert logs["loss/total"].item() == pytest.approx(sum(buckets) / 3, rel=1e-5)   # 12 times: 4 per third


def test_bucket_logs_by_hand_and_stratified_times_are_evenly_spread():
    losses, fraction = torch.tensor([1.0, 2.0, 3.0, 5.0]), torch.tensor([0.1, 0.2, 0.5, 0.9])
    logs = bucket_logs(losses, fraction)
    assert [logs[f"loss/t_{b}"].item() for b in ("low", "mid", "high")] == [1.5, 3.0, 5.0]
    assert bucket_logs(losses[:2], fraction[:2]) == {}                      # too few to fill three buckets
    times = stratified_uniform(7, gen(), "cpu").sort().values
    torch.testing.assert_close(times[1:] - times[:-1], torch.full((6,), 1 / 7))
    assert 0 <= times.min() and times.max() < 1
    draws = torch.stack([stratified_uniform(3, gen(i), "cpu")[2] for i in range(2000)])
    assert draws.mean().item() == pytest.approx(0.5, abs=0.03)             # each time is uniform on [0, 1)


@pytest.mark.parametrize("width", [8, 16, 64])
def test_time_and_class_move_the_output_of_a_fresh_unet_at_every_width(width):
    """The conditioning survives the GroupNorms: another t or y changes the output by a visible amount,
    not by float rounding."""
    net = UNet(1, width, (1, 2), 1, num_classes=10).eval()
    x = torch.randn(4, 1, 28, 28, generator=gen(1))
    t, y = torch.full((4,), 100.0), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        base = net(x, t, y)
        scale = base.abs().mean()
        assert (net(x, torch.full((4,), 900.0), y) - base).abs().mean() > 0.01 * scale
        assert (net(x, t, torch.full((4,), 10)) - base).abs().mean() > 0.01 * scale


def test_group_norm_groups_hold_several_channels():
    from genlab.models.nn.unet import group_norm
    assert [group_norm(c).num_groups for c in (8, 16, 64, 128, 256, 96)] == [2, 4, 16, 32, 32, 16]


def test_unet_shapes_at_every_size_and_odd_resolutions():
    for channels, size, mult in [(1, 28, (1, 2, 2)), (1, 28, (1, 2, 2, 2)), (3, 32, (1, 2, 2, 2)), (3, 64, (1, 2))]:
        net = UNet(channels, 8, mult, 1, num_classes=10)
        x = torch.randn(2, channels, size, size)
        assert net(x, torch.tensor([1.0, 900.0]), torch.tensor([0, 10])).shape == x.shape
        assert net(x, torch.tensor([1.0, 900.0])).shape == x.shape           # unconditional call


def test_patch_folds_pixel_blocks_into_channels_around_the_unet():
    """patch 2: a 64 px RGB image enters the U-Net as 32x32x12 (space-to-depth), every level runs at half
    the resolution, and the output is unfolded back to the image's shape; auto widths follow the folded size."""
    model = tiny("flow", channels=3, image_size=64, num_classes=9, patch=2, channel_mult="auto")
    seen = {}
    model.network.conv_in.register_forward_hook(lambda m, inputs, out: seen.update(inp=inputs[0].shape))
    model.network.mid1.register_forward_hook(lambda m, inputs, out: seen.update(mid=out.shape))
    x = torch.randn(2, 3, 64, 64, generator=gen(3))
    out = model.network(x, torch.tensor([5.0, 500.0]), torch.tensor([0, 9]))
    assert out.shape == x.shape
    assert seen["inp"] == (2, 12, 32, 32) and seen["mid"][-1] == 4          # 32 -> 16 -> 8 -> 4
    assert model.sample(2, rng=gen(4), y=torch.tensor([1, 2])).shape == (2, 3, 64, 64)
    assert tiny("flow", channels=3, image_size=64, num_classes=9, channel_mult="auto").network.patch == 1


def test_bad_channel_mult_is_one_clear_error():
    with pytest.raises(ConfigError, match="channel_mult must be"):
        tiny("ddpm", channel_mult="1,x")


@pytest.mark.parametrize("name", FAMILIES)
def test_a_step_in_channels_last_and_bf16_autocast_matches_the_plain_step(name):
    """The trainer's CUDA setting (channels_last, bf16 autocast), here on the CPU: the same loss."""
    plain, fast = tiny(name), tiny(name).to(memory_format=torch.channels_last)
    plain_logs = plain.training_step(batches(), plain.make_optimizers(), StepContext(0, gen(2)))
    source = batches()
    channels_last = lambda: tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
                                  for t in source())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast_logs = fast.training_step(channels_last, fast.make_optimizers(), StepContext(0, gen(2)))
    assert fast_logs["loss/total"].item() == pytest.approx(plain_logs["loss/total"].item(), rel=0.05)
    images = fast.eval().sample(2, gen())
    assert images.shape == (2, 1, 28, 28) and torch.isfinite(images).all()
