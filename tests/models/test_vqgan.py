"""lit_gen.models.vqgan: two-phase manual optimization, the adaptive weight, stability, checkpoints."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.data.digits import load_digits_uint8
from lit_gen.errors import ConfigError
from lit_gen.models.vqgan import VQGAN, hinge_d_loss


def tiny_vqgan(quantizer: dict | None = None, **kwargs) -> VQGAN:
    args = dict(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1,
                perceptual_weight=0.0, disc_layers=1, disc_channels=8, lr=1e-3)
    quantizer = {"name": "vq", "num_codes": 16, "code_dim": 4, **(quantizer or {})}
    return VQGAN(**{**args, **kwargs}, quantizer=quantizer)


def digits_loader(n: int = 512, batch_size: int = 16) -> DataLoader:
    images, labels = load_digits_uint8()
    x = images[:n].float() / 127.5 - 1
    return DataLoader(TensorDataset(x, labels[:n]), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def trainer(max_steps: int, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False, log_every_n_steps=1,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks), **kwargs)


class StepRecorder(L.Callback):
    """For each training batch: did the generator / discriminator weights move, and the logged metrics."""

    def __init__(self):
        self.steps = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._g = module.decoder.last_layer.weight.detach().clone()
        self._d = [p.detach().clone() for p in module.discriminator.parameters()]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        g_moved = not torch.equal(self._g, module.decoder.last_layer.weight)
        d_moved = any(not torch.equal(a, b) for a, b in zip(self._d, module.discriminator.parameters()))
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if k.endswith("_step")}
        self.steps.append((g_moved, d_moved, trainer.global_step, metrics))


def test_only_the_generator_steps_before_disc_start_then_both_every_step():
    torch.manual_seed(0)
    model = tiny_vqgan(disc_start=3)
    recorder = StepRecorder()
    # max_steps counts optimizer steps: 3 generator-only batches + 3 batches of two steps each.
    trainer(max_steps=9, callbacks=[recorder]).fit(model, digits_loader())
    moved = [(g, d) for g, d, _, _ in recorder.steps]
    assert moved == [(True, False)] * 3 + [(True, True)] * 3
    assert [step for _, _, step, _ in recorder.steps] == [1, 2, 3, 5, 7, 9]
    opt_g, opt_d = model.optimizers()
    assert {int(s["step"]) for s in opt_g.optimizer.state.values()} == {6}
    assert {int(s["step"]) for s in opt_d.optimizer.state.values()} == {3}
    before, after = recorder.steps[0][3], recorder.steps[-1][3]
    assert before["train/disc_lambda_step"] == 0 and before["train/g_adv_step"] == 0
    assert "train/d_loss_step" not in before
    assert after["train/disc_lambda_step"] > 0
    for key in ("d_loss", "logits_real", "logits_fake", "recon", "perceptual", "codebook", "commitment", "perplexity"):
        assert f"train/{key}_step" in after


def test_the_cosine_schedule_decays_over_the_generators_steps_not_max_steps():
    """max_steps=9 with disc_start=3 is 3 + 3 batches: the generator's rate follows a 6-step cosine."""
    torch.manual_seed(0)
    model = tiny_vqgan(disc_start=3, lr=0.1, lr_schedule="cosine")
    rates = []

    class Rate(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer(max_steps=9, callbacks=[Rate()]).fit(model, digits_loader())
    assert rates == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)])


def test_each_phase_clips_to_its_own_limit():
    model = tiny_vqgan(disc_start=0, grad_clip=0.01, disc_grad_clip=0.02)
    clipped = []
    clip = model.clip_gradients_by_norm

    def spy(optimizer, max_norm, gradients):
        clipped.append((model.trainer.optimizers.index(optimizer), max_norm))
        clip(optimizer, max_norm, gradients)

    model.clip_gradients_by_norm = spy
    trainer(max_steps=4).fit(model, digits_loader(32))
    assert clipped == [(0, 0.01), (1, 0.02)] * 2


def test_adaptive_weight_equals_a_direct_autograd_computation():
    torch.manual_seed(0)
    model = tiny_vqgan(disc_weight=0.8)
    x = next(iter(digits_loader(64)))[0]
    out, _ = model.generator_loss(x, disc_active=True)

    x_hat, q = model(x)  # the same forward again (no EMA, no restarts: deterministic)
    rec = F.l1_loss(x_hat, x)
    g_adv = -model.discriminator(x_hat).mean()
    w = model.decoder.last_layer.weight
    rec_grad = torch.autograd.grad(rec, w, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(g_adv, w, retain_graph=True)[0]
    expected = 0.8 * rec_grad.norm() / (adv_grad.norm() + 1e-4)
    assert torch.allclose(out.terms["disc_lambda"], expected, rtol=1e-4)
    assert torch.allclose(out.total, rec + expected * g_adv + q.losses["codebook"] + q.losses["commitment"], rtol=1e-4)

    clamped, _ = tiny_vqgan(max_disc_lambda=1e-3, disc_weight=0.5).generator_loss(x, disc_active=True)
    assert clamped.terms["disc_lambda"].item() == pytest.approx(0.5e-3)


def test_hinge_loss():
    assert hinge_d_loss(torch.tensor([2.0, 0.0]), torch.tensor([-3.0, 1.0])).item() == pytest.approx(0.5 * (0.5 + 1.0))


def test_no_nan_over_many_tiny_steps_and_the_checkpoint_rebuilds_the_model(tmp_path):
    from lit_gen.checkpoints import load_model

    torch.manual_seed(0)
    model = tiny_vqgan({"codebook_ema_decay": 0.9, "restart_dead_codes": True, "dead_code_steps": 10}, disc_start=40,
                       recon_loss="l2")
    recorder = StepRecorder()
    fit = trainer(max_steps=200, callbacks=[recorder])  # 40 + 80 = 120 batches
    fit.fit(model, digits_loader(batch_size=8))
    assert len(recorder.steps) == 120
    for _, _, step, metrics in recorder.steps:
        bad = {k: v for k, v in metrics.items() if not torch.isfinite(torch.tensor(v))}
        assert not bad, f"non-finite metrics at step {step}: {bad}"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    first, last = recorder.steps[0][3]["train/recon_step"], recorder.steps[-1][3]["train/recon_step"]
    assert last < first

    path = tmp_path / "vqgan.ckpt"
    fit.save_checkpoint(path)
    loaded = load_model(path)
    assert isinstance(loaded, VQGAN) and loaded.disc_start == 40 and loaded.hparams.recon_loss == "l2"
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())
    x = next(iter(digits_loader(8)))[0]
    assert torch.equal(model.eval().decode(model.encode(x)), loaded.decode(loaded.encode(x)))


def test_missing_lpips_weights_stop_training_before_the_first_step(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = tiny_vqgan(image_size=16, perceptual_weight=1.0, perceptual_net="vgg")  # building needs no weights
    with pytest.raises(ConfigError, match="vgg16-397923af.pth") as info:
        trainer(max_steps=2).fit(model, digits_loader(32, batch_size=16))
    assert "model.perceptual_weight=0" in str(info.value)
    assert model.global_step == 0


def test_impossible_settings_are_config_errors():
    with pytest.raises(ConfigError, match="disc_layers=3 leaves no logit map for 8 px"):
        tiny_vqgan(disc_layers=3)
    with pytest.raises(ConfigError, match="LPIPS-alex needs images of at least 32 px"):
        tiny_vqgan(perceptual_weight=1.0, perceptual_net="alex")


def test_a_non_finite_batch_skips_its_step_instead_of_corrupting_the_weights(caplog):
    torch.manual_seed(0)
    model = tiny_vqgan({"codebook_ema_decay": 0.9, "restart_dead_codes": True, "dead_code_steps": 1}, disc_start=0)
    images, labels = next(iter(digits_loader(32, batch_size=16)))
    poisoned = images.clone()
    poisoned[:8] = float("nan")
    loader = DataLoader(TensorDataset(torch.cat([poisoned, images]), torch.cat([labels, labels])), batch_size=16)
    fit = trainer(max_steps=-1, max_epochs=1)
    fit.fit(model, loader)
    assert fit.global_step == 2  # the poisoned batch stepped neither optimizer; the clean one stepped both
    assert all(torch.isfinite(t).all() for t in [*model.parameters(), *model.buffers()])
    assert any("non-finite generator loss" in r.getMessage() for r in caplog.records)
