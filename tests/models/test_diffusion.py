"""The diffusion family: it learns, samples with its EMA weights deterministically, guides, validates, and runs in latent space."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.build import build_model
from lit_gen.checkpoints import load_model
from lit_gen.data.digits import load_digits_uint8
from lit_gen.errors import ConfigError
from lit_gen.models.ae import Autoencoder
from lit_gen.models.diffusion import Diffusion
from lit_gen.signatures import check_arguments

TINY = dict(channels=1, image_size=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
            attention_resolutions=(), dropout=0.0, norm_groups=8,
            objective={"name": "vp", "timesteps": 100})


def digits(n: int):
    images, labels = load_digits_uint8()
    return images[:n].float() / 127.5 - 1.0, labels[:n]


def train(model: Diffusion, images, labels, steps: int, batch_size: int | None = None, lr: float = 3e-3) -> None:
    """Plain Adam steps (on random minibatches when ``batch_size`` is set) with an EMA update after
    each, as the Lightning hook does."""
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=lr)
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (batch_size,), generator=order) if batch_size else slice(None)
        loss = model.loss((images[idx], labels[idx])).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.update_ema()


def eval_loss(model: Diffusion, images, labels) -> float:
    torch.manual_seed(123)  # the same timesteps and noises for every evaluation
    model.eval()
    with torch.no_grad():
        return model.loss((images.repeat(8, 1, 1, 1), labels.repeat(8))).total.item()


@pytest.fixture(scope="module")
def trained():
    """A tiny unconditional diffusion model fitted to 16 digits, with its loss before and after."""
    torch.manual_seed(0)
    images, labels = digits(16)
    model = Diffusion(**TINY, ema={"name": "exponential", "decay": 0.9})
    before = eval_loss(model, images, labels)
    train(model, images, labels, steps=60)
    return model, before, eval_loss(model, images, labels)


@pytest.fixture(scope="module")
def conditional():
    """A tiny class-conditional diffusion model trained briefly on all 1,797 digits."""
    torch.manual_seed(0)
    images, labels = digits(None)
    model = Diffusion(**TINY, num_classes=10, label_dropout=0.2, ema={"name": "exponential", "decay": 0.9})
    train(model, images, labels, steps=80, batch_size=64)
    return model


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------- training
def test_a_tiny_model_fits_a_handful_of_digits(trained):
    _, before, after = trained
    assert before == pytest.approx(1.0, abs=0.15)  # zero-initialised output: loss = E[eps^2]
    assert after < 0.5 * before


def test_loss_reports_each_timestep_quartile():
    torch.manual_seed(0)
    images, labels = digits(64)
    out = Diffusion(**TINY, ema={"name": "exponential", "decay": 0}).loss((images, labels))
    assert set(out.terms) == {"loss_q0", "loss_q1", "loss_q2", "loss_q3"}
    assert out.total.ndim == 0 and out.total.requires_grad


def test_training_draws_from_the_reseeded_global_rng():
    # The training loop reseeds the global RNG every step; equal seeds must give equal losses.
    images, labels = digits(8)
    model = Diffusion(**TINY, ema={"name": "exponential", "decay": 0})
    torch.manual_seed(7)
    a = model.loss((images, labels)).total
    torch.manual_seed(7)
    assert torch.equal(a, model.loss((images, labels)).total)


def test_label_dropout_replaces_labels_with_the_null_class():
    model = Diffusion(**TINY, num_classes=10, label_dropout=0.3, ema={"name": "exponential", "decay": 0})
    seen = []
    forward = model.unet.forward
    model.unet.forward = lambda x, t, labels=None: seen.append(labels) or forward(x, t, labels)
    images, labels = torch.zeros(1000, 1, 8, 8), torch.arange(1000) % 10
    torch.manual_seed(0)
    model.train().loss((images, labels))
    dropped = (seen[0] == 10).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.04)
    assert torch.equal(seen[0][seen[0] != 10], labels[seen[0] != 10])
    model.eval().loss((images, labels))  # no dropout outside training
    assert torch.equal(seen[1], labels)


def test_optimizer_excludes_the_ema_copy(trained):
    model, _, _ = trained
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in model.unet.parameters()}


# ---------------------------------------------------------------------------------- EMA and sampling
def test_sample_uses_the_ema_weights(trained):
    model, _, _ = trained
    raw = list(model.unet.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(model.ema.averaged.parameters(), raw))
    with_ema = model.sample(4, generator=g(0), steps=10)
    assert not torch.allclose(with_ema, model.sample(4, generator=g(0), steps=10, use_ema=False))
    with model.ema.applied_to(model.unet):
        swapped = model.sample(4, generator=g(0), steps=10, use_ema=False)
    torch.testing.assert_close(with_ema, swapped)


@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_samples_are_images_in_unit_range_and_deterministic(trained, sampler, eta):
    model, _, _ = trained
    a = model.sample(5, generator=g(1), sampler=sampler, steps=8, eta=eta)
    assert a.shape == (5, 1, 8, 8) and a.dtype == torch.float32
    assert a.min().item() >= 0.0 and a.max().item() <= 1.0
    assert torch.equal(a, model.sample(5, generator=g(1), sampler=sampler, steps=8, eta=eta))
    assert not torch.allclose(a, model.sample(5, generator=g(2), sampler=sampler, steps=8, eta=eta))


def test_sampling_restores_training_mode(trained):
    model, _, _ = trained
    model.train()
    model.sample(1, generator=g(0), steps=2, use_ema=False)
    assert model.unet.training
    model.eval()


def test_conditional_sampling_with_guidance(conditional):
    model = conditional
    labels = torch.tensor([0, 1, 2, 3])
    guided = model.sample(4, labels=labels, generator=g(0), steps=6, guidance=3.0)
    assert guided.shape == (4, 1, 8, 8)
    assert not torch.allclose(guided, model.sample(4, labels=labels, generator=g(0), steps=6, guidance=1.0))
    assert not torch.allclose(guided, model.sample(4, labels=labels.flip(0), generator=g(0), steps=6, guidance=3.0))
    # Without labels, classes are drawn from the generator: still deterministic.
    assert torch.equal(model.sample(3, generator=g(4), steps=4), model.sample(3, generator=g(4), steps=4))


def test_guided_samples_show_the_requested_digit(conditional):
    # A nearest-class-mean classifier (90% right on real digits) reads the generated digits.
    images, labels = digits(None)
    means = torch.stack([images[labels == c].mean(0) for c in range(10)]).flatten(1)
    wanted = torch.arange(10).repeat(5)

    def accuracy(guidance: float) -> float:
        samples = conditional.sample(50, labels=wanted, generator=g(1), steps=10, guidance=guidance) * 2 - 1
        return (torch.cdist(samples.flatten(1), means).argmin(1) == wanted).float().mean().item()

    guided, plain = accuracy(3.0), accuracy(1.0)
    assert guided >= 0.5  # chance is 0.1
    assert guided > plain  # guidance trades diversity for fidelity to the label


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": torch.tensor([0, 10])}, r"labels must be in \[0, 10\)"),
        ({"labels": torch.tensor([-1, 2])}, r"labels must be in \[0, 10\)"),
        ({"labels": torch.tensor([1, 2, 3])}, r"shape \(2,\)"),
        ({"labels": torch.tensor([1.0, 2.0])}, "int64"),
        ({"steps": 101}, r"steps must be in \[1, 100\]"),
        ({"sampler": "plms"}, "unknown sampler"),
        ({"spacing": "quadratic"}, "unknown spacing"),
        ({"eta": -1.0}, "eta must be >= 0"),
        ({"guidance": -2.0}, "guidance scale must be a finite number >= 0"),
    ],
)
def test_bad_sample_arguments_raise(conditional, kwargs, message):
    with pytest.raises(ValueError, match=message):
        conditional.sample(2, generator=g(0), **kwargs)


def test_unconditional_model_rejects_labels_and_guidance(trained):
    model, _, _ = trained
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        model.sample(2, guidance=2.0)
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------- objectives and ODE samplers
@pytest.mark.parametrize("objective", [{"objective": "edm"}, {"objective": "flow"},
                                       {"objective": {"name": "vp", "timesteps": 100, "prediction": "v", "min_snr_gamma": 5.0}}],
                         ids=["edm", "flow", "min-snr"])
def test_every_objective_learns_and_samples_with_every_ode_sampler(objective):
    torch.manual_seed(0)
    images, labels = digits(16)
    model = Diffusion(**{**TINY, **objective}, ema={"name": "exponential", "decay": 0.9})
    before = eval_loss(model, images, labels)
    train(model, images, labels, steps=60)
    assert eval_loss(model, images, labels) < 0.6 * before
    for sampler in ("ddim", "euler", "heun", "dpmpp_2m"):
        a = model.sample(3, generator=g(1), sampler=sampler, steps=4)
        assert a.shape == (3, 1, 8, 8) and 0.0 <= a.min().item() and a.max().item() <= 1.0
        assert torch.equal(a, model.sample(3, generator=g(1), sampler=sampler, steps=4))
        assert not torch.allclose(a, model.sample(3, generator=g(2), sampler=sampler, steps=4))


def test_ode_samplers_serve_guided_models(conditional):
    labels = torch.tensor([0, 1, 2, 3])
    for sampler in ("heun", "dpmpp_2m"):
        guided = conditional.sample(4, labels=labels, generator=g(0), sampler=sampler, steps=5, guidance=3.0)
        plain = conditional.sample(4, labels=labels, generator=g(0), sampler=sampler, steps=5, guidance=1.0)
        assert guided.shape == (4, 1, 8, 8) and not torch.allclose(guided, plain)


def test_spacing_and_recompute_eps_reach_the_sampler(trained):
    model, _, _ = trained
    base = model.sample(3, generator=g(0), steps=5)
    assert torch.equal(base, model.sample(3, generator=g(0), steps=5, spacing="linspace"))  # the default
    assert not torch.allclose(base, model.sample(3, generator=g(0), steps=5, spacing="leading"))
    assert torch.equal(base, model.sample(3, generator=g(0), steps=5, recompute_eps=True))  # the default
    assert not torch.allclose(base, model.sample(3, generator=g(0), steps=5, recompute_eps=False))
    torch.testing.assert_close(model.sample(3, generator=g(0), steps=5, clip_x0=False),
                               model.sample(3, generator=g(0), steps=5, clip_x0=False, recompute_eps=False))


def test_continuous_objectives_refuse_the_ancestral_sampler_and_spacing():
    model = Diffusion(**{**TINY, "objective": "flow"}, ema={"name": "exponential", "decay": 0})
    with pytest.raises(ValueError, match="ancestral ddpm sampler needs a discrete"):
        model.sample(2, sampler="ddpm")
    with pytest.raises(ValueError, match="leave spacing unset"):
        model.sample(2, sampler="heun", spacing="leading")
    assert model.sample(1, generator=g(0), steps=120).shape == (1, 1, 8, 8)  # no cap at the (unused) timesteps


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 10, "channel_mults": (1, 2, 2)}, "image_size 10 is not divisible by 4"),
        ({"objective": {"name": "edm", "prediction": "v"}}, r"model.objective.prediction: unknown key for EDMObjective"),
        ({"objective": {"name": "flow", "min_snr_gamma": 5.0}}, "model.objective.min_snr_gamma: unknown key"),
        ({"attention_heads": 3}, "attention_heads=3 does not divide"),
        ({"objective": {"name": "vp", "beta_start": 0.1}}, "beta_start < beta_end"),
    ],
)
def test_bad_combinations_of_arguments_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Diffusion(**{**TINY, **kwargs})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"objective": "score"}, "model.objective.name: unknown objective 'score'. Valid choices: edm, flow, vp"),
        ({"objective": {"name": "vp", "min_snr_gamma": 0.0}}, "model.objective.min_snr_gamma: expected a number > 0"),
        ({"objective": {"name": "edm", "sigma_data": 0.0}}, "model.objective.sigma_data: expected a number > 0"),
        ({"objective": {"name": "vp", "prediction": "score"}}, "model.objective.prediction: expected one of 'eps', 'x0', 'v'"),
        ({"objective": 5}, r"model.objective: expected an objective name \(edm, flow, vp\) or a section"),
        ({"label_dropout": 1.0}, r"model.label_dropout: expected a number in \[0, 1\)"),
        ({"ema": {"name": "exponential", "decay": 1.0}}, r"model.ema.decay: expected a number in \[0, 1\)"),
        ({"ema": {"name": "power", "sigma_rels": [0.05, 0.3]}}, r"model.ema.sigma_rels: expected a number in \(0, 0.2886\) at item 1"),
        ({"ema": {"name": "power", "snapshot_every": 0}}, r"model.ema.snapshot_every: expected an integer >= 1"),
        ({"num_classes": 0}, "model.num_classes: expected an integer >= 1"),
        ({"attention_heads": 0}, "model.attention_heads: expected an integer >= 1"),
        ({"objective": {"name": "flow", "time_sampling": "beta"}}, "model.objective.time_sampling: expected one of"),
    ],
)
def test_bad_single_values_are_config_errors_where_the_config_is_read(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        check_arguments("model", Diffusion, {**TINY, **kwargs})


# ---------------------------------------------------------------------------------- Lightning and checkpoints
def fit(model, images, labels, steps: int) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True))
    return trainer


def test_lightning_updates_ema_each_step_and_checkpoints_rebuild_the_sampler(tmp_path):
    torch.manual_seed(0)
    images, labels = digits(32)
    model = Diffusion(**TINY, num_classes=10, ema={"name": "exponential", "decay": 0.99})
    trainer = fit(model, images, labels, steps=3)
    assert int(model.ema.num_updates) == 3
    trainer.save_checkpoint(tmp_path / "ddpm.ckpt")
    restored = load_model(tmp_path / "ddpm.ckpt")
    assert int(restored.ema.num_updates) == 3
    model.eval()
    expected = model.sample(3, labels=torch.tensor([1, 2, 3]), generator=g(0), steps=5, guidance=2.0)
    torch.testing.assert_close(
        restored.sample(3, labels=torch.tensor([1, 2, 3]), generator=g(0), steps=5, guidance=2.0), expected)


def test_latent_diffusion_trains_samples_and_keeps_its_first_stage(tmp_path):
    torch.manual_seed(0)
    images, labels = digits(64)
    # A tiny convolutional autoencoder: 8x8 images -> 2x4x4 latents.
    ae = Autoencoder(channels=1, image_size=8, architecture="conv", conv_channels=(8,), latent_dim=2, lr=1e-2)
    fit(ae, images, labels, steps=5).save_checkpoint(tmp_path / "ae.ckpt")

    model = build_model("diffusion", {**TINY, "base_channels": 8, "channel_mults": (1,), "first_stage": str(tmp_path / "ae.ckpt"),
                                 "ema": {"name": "exponential", "decay": 0.9}})
    assert model.diffusion_shape == (2, 4, 4)
    assert model.unet.in_channels == 2
    frozen = {k: v.clone() for k, v in model.first_stage.state_dict().items()}
    # The builder read the file: the first stage holds the trained autoencoder's weights, not a fresh init.
    assert frozen.keys() == ae.state_dict().keys()
    assert all(torch.equal(frozen[k], v.cpu()) for k, v in ae.state_dict().items())
    assert not any(p.requires_grad for p in model.first_stage.parameters())

    trainer = fit(model, images, labels, steps=4)
    with torch.no_grad():
        z = model.first_stage.encode(images[:16])  # the first training batch... up to shuffling
    scale = model.latent_scale.item()
    assert scale > 0
    assert scale == pytest.approx(1 / z.std().item(), rel=0.5)
    assert not model.first_stage.training
    for k, v in model.first_stage.state_dict().items():
        assert torch.equal(v, frozen[k]), f"the frozen first stage changed: {k}"

    out = model.sample(3, generator=g(0), steps=5)
    assert out.shape == (3, 1, 8, 8) and 0.0 <= out.min().item() and out.max().item() <= 1.0
    few = model.sample(3, generator=g(0), sampler="dpmpp_2m", steps=4)  # the ODE samplers decode latents too
    assert few.shape == (3, 1, 8, 8) and not torch.allclose(few, out)

    # The diffusion checkpoint holds the first stage: sampling works after the AE file is gone.
    trainer.save_checkpoint(tmp_path / "ldm.ckpt")
    (tmp_path / "ae.ckpt").unlink()
    restored = load_model(tmp_path / "ldm.ckpt")
    assert restored.latent_scale.item() == scale
    torch.testing.assert_close(restored.sample(3, generator=g(0), steps=5), model.eval().sample(3, generator=g(0), steps=5))


def test_latent_diffusion_rejects_flat_latents(tmp_path):
    ae = Autoencoder(channels=1, image_size=8, architecture="mlp", hidden_dims=(16,), latent_dim=3)
    fit(ae, *digits(16), steps=1).save_checkpoint(tmp_path / "mlp_ae.ckpt")
    with pytest.raises(ConfigError, match="latents must be spatial"):
        build_model("diffusion", {**TINY, "first_stage": str(tmp_path / "mlp_ae.ckpt")})
    # The model reads no file itself: a path without the builder's spec is refused with the way to build it.
    with pytest.raises(ConfigError, match=r"a model never opens files itself.*lit_gen.build.build_model"):
        Diffusion(**TINY, first_stage=str(tmp_path / "mlp_ae.ckpt"))


def test_checkpoints_from_before_the_objectives_still_load(tmp_path):
    # A checkpoint saved before objective / min_snr_gamma / sigma_data / attention_heads existed, with the flat
    # settings of its time (timesteps, prediction, ...), rebuilds as the vp objective with those settings.
    torch.manual_seed(0)
    images, labels = digits(16)
    model = Diffusion(**TINY, ema={"name": "exponential", "decay": 0.9})
    fit(model, images, labels, steps=1).save_checkpoint(tmp_path / "new.ckpt")
    saved = torch.load(tmp_path / "new.ckpt", weights_only=True)
    hparams = saved["hyper_parameters"]
    for key in ("objective", "attention_heads"):
        del hparams[key]
    hparams.update(timesteps=100, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="eps")
    saved["lit_gen"]["model"] = "ddpm"  # the family's name then
    torch.save(saved, tmp_path / "old.ckpt")
    restored = load_model(tmp_path / "old.ckpt")
    assert restored.hparams.objective == model.hparams.objective and restored.objective.name == "vp"
    torch.testing.assert_close(restored.sample(2, generator=g(0), steps=4), model.eval().sample(2, generator=g(0), steps=4))


def test_a_flat_objective_setting_in_a_config_names_the_section_it_moved_to():
    from lit_gen.config import load_config

    with pytest.raises(ConfigError, match=r"model.prediction moved into the objective section: write "
                                          r"model.objective: \{name: vp, prediction: 'v'\}"):
        load_config("configs/ddpm_digits.yaml", ["model.prediction=v"])
    with pytest.raises(ConfigError, match=r"model.flow_time_sampling moved .*\{name: flow, time_sampling: 'uniform'\}"):
        load_config("configs/quickstart.yaml", ["model.flow_time_sampling=uniform"])
    # The new form, dotted or whole; a name alone keeps the objective's defaults; ddpm is vp's alias.
    assert load_config("configs/ddpm_digits.yaml", ["model.objective.prediction=v"]).model["objective"]["prediction"] == "v"
    flow = load_config("configs/ddpm_digits.yaml", ["model.objective=flow"]).model["objective"]
    assert flow == {"name": "flow", "time_sampling": "logit_normal"}
    assert load_config("configs/quickstart.yaml", ["model.objective=ddpm"]).model["objective"]["name"] == "vp"
    assert load_config("configs/quickstart.yaml", ["model.objective.time_sampling=uniform"]).model["objective"] == {
        "name": "flow", "time_sampling": "uniform"}
    assert load_config("configs/quickstart.yaml", ["model.name=ddpm"]).model["name"] == "diffusion"


@pytest.mark.parametrize("objective, expected", [("vp", "ddim"), ("ddpm", "ddim"), ("edm", "euler"), ("flow", "euler")])
def test_records_name_the_sampler_that_runs(objective, expected):
    from lit_gen.metrics.sampling import sample_settings

    model = Diffusion(channels=1, image_size=8, base_channels=8, channel_mults=(1,), attention_resolutions=(), norm_groups=4,
                      objective=objective)
    assert sample_settings(model, {})["sampler"] == expected
    assert sample_settings(model, {"sampler": "heun"})["sampler"] == "heun"


# ---------------------------------------------------------------------------------- default sampler
def test_the_default_sampler_is_what_sample_does_when_told_nothing():
    torch.manual_seed(0)
    model = Diffusion(**TINY, ema={"name": "exponential", "decay": 0}, default_sampler={"sampler": "heun", "steps": 3})
    assert model.sample_defaults()["sampler"] == "heun" and model.sample_defaults()["steps"] == 3
    calls = []
    forward = model.unet.forward
    model.unet.forward = lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs)
    default = model.sample(2, generator=g(0))
    assert len(calls) == 2 * 3 - 1  # Heun's evaluations at 3 steps, not DDIM's 50
    assert torch.equal(default, model.sample(2, generator=g(0), sampler="heun", steps=3))
    # A caller's option wins over the default, one option at a time.
    assert not torch.equal(default, model.sample(2, generator=g(0), steps=4))
    plain = Diffusion(**TINY, ema={"name": "exponential", "decay": 0})
    assert plain.sample_defaults() | {"steps": 50} == Diffusion.SAMPLE_DEFAULTS and plain.sample_defaults()["steps"] == 50


def test_a_default_sampler_the_model_cannot_run_is_refused_when_built():
    with pytest.raises(ConfigError, match=r"model.default_sampler: unknown sample\(\) option\(s\) temperature"):
        Diffusion(**TINY, default_sampler={"temperature": 1.0})
    with pytest.raises(ConfigError, match=r"model.default_sampler=.*steps must be in \[1, 100\]"):
        Diffusion(**TINY, default_sampler={"steps": 500})
    with pytest.raises(ConfigError, match="guidance=2.0 needs a class-conditional model"):
        Diffusion(**TINY, default_sampler={"guidance": 2.0})


def test_the_fid_record_names_the_default_sampler_that_ran():
    from lit_gen.metrics.sampling import sample_settings

    model = Diffusion(**TINY, default_sampler={"sampler": "dpmpp_2m", "steps": 7})
    assert sample_settings(model, {}) == {"sampler": "dpmpp_2m", "steps": 7, "eta": 0.0, "guidance": 1.0, "weights": "ema"}
    assert sample_settings(model, {"steps": 9, "use_ema": False})["steps"] == 9
