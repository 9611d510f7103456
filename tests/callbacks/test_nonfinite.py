"""lit_gen.callbacks.nonfinite: skip non-finite steps, count them, stop with a clear error."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.callbacks.nonfinite import NonFiniteGuard
from lit_gen.errors import TrainingError
from lit_gen.models.base import GenerativeModule, LossOutput
from lit_gen.models.diffusion import Diffusion


class Poisoned(GenerativeModule):
    """A linear model whose loss is NaN at chosen steps."""

    def __init__(self, bad_steps=(), precision_safe=True):
        super().__init__(lr=0.1)
        self.net = torch.nn.Linear(2, 1)
        self.bad_steps = set(bad_steps)

    def loss(self, batch):
        x, _ = batch
        value = self.net(x).pow(2).mean()
        if self.global_step in self.bad_steps:
            value = value * float("nan")
        return LossOutput(value, {"mse": value})


def loader():
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.zeros(64, dtype=torch.long)), batch_size=8)


def trainer(guard, steps, precision="32-true"):
    return L.Trainer(max_steps=steps, callbacks=[guard], logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", precision=precision)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_bad_steps_are_skipped_and_weights_stay_finite(precision):
    model = Poisoned(bad_steps={2, 3})
    guard = NonFiniteGuard(max_consecutive=5)
    snapshots = {}

    class Snap(L.Callback):
        def on_train_batch_start(self, tr, pl, batch, idx):
            snapshots[tr.global_step] = pl.net.weight.detach().clone()

    t = trainer(guard, 6, precision)
    t.callbacks.append(Snap())
    t.fit(model, loader())
    assert guard.skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # The NaN steps changed nothing: weights before step 2 equal weights after step 3.
    assert torch.equal(snapshots[2], snapshots[4])
    assert not torch.equal(snapshots[0], snapshots[1])


def test_too_many_in_a_row_stop_with_an_explanation():
    model = Poisoned(bad_steps=range(100))
    with pytest.raises(TrainingError) as info:
        trainer(NonFiniteGuard(max_consecutive=3), 20).fit(model, loader())
    message = str(info.value)
    assert "training stopped at step" in message and "3 optimizer steps in a row" in message
    assert "mse=nan" in message and "learning rate" in message and "run.max_nonfinite_steps" in message


def test_the_count_survives_a_checkpoint():
    guard = NonFiniteGuard(4)
    guard.consecutive, guard.skipped = 2, 7
    again = NonFiniteGuard(4)
    again.load_state_dict(guard.state_dict())
    assert (again.consecutive, again.skipped) == (2, 7)


class LightningClipped(Poisoned):
    """The same model clipped by Lightning's own ``clip_gradients`` (a second pass over the gradients)."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


def test_clipping_reuses_the_guards_norm_and_matches_lightnings_clipping(monkeypatch):
    def train(cls):
        torch.manual_seed(0)
        model = cls()
        L.Trainer(max_steps=6, callbacks=[NonFiniteGuard()], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                  gradient_clip_val=0.05).fit(model, loader())
        return model

    second_passes = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: second_passes.append(1) or original(*a, **k))
    guarded = train(Poisoned)
    assert not second_passes  # clipping used the guard's norm
    plain = train(LightningClipped)
    assert len(second_passes) == 6
    for a, b in zip(guarded.parameters(), plain.parameters()):
        assert torch.equal(a, b)


class PoisonedDiffusion(Diffusion):
    """A tiny diffusion model whose loss is NaN at chosen global steps."""

    def __init__(self, bad_steps=(), **kwargs):
        super().__init__(**kwargs)
        self.bad_steps = set(bad_steps)

    def loss(self, batch):
        out = super().loss(batch)
        if self.global_step in self.bad_steps:
            return LossOutput(out.total * float("nan"), out.terms)
        return out


def training_state(trainer: L.Trainer, model: Diffusion) -> dict:
    """Everything a training step may advance, copied."""
    optimizer = trainer.optimizers[0]
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    return {
        "weights": [p.detach().clone() for p in model.unet.parameters()],
        "ema": [p.detach().clone() for p in model.ema.averaged.parameters()],
        "ema_updates": int(model.ema.num_updates),
        "ema_decay": model.ema.current_decay(),
        "last_epoch": scheduler.last_epoch,
        "lr": optimizer.param_groups[0]["lr"],
        "optimizer": copy.deepcopy(optimizer.state_dict()["state"]),
        "global_step": trainer.global_step,
    }


def assert_same_state(a: dict, b: dict) -> None:
    for key in ("ema_updates", "ema_decay", "last_epoch", "lr"):
        assert a[key] == b[key], key
    for key in ("weights", "ema"):
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key])), key
    assert a["optimizer"].keys() == b["optimizer"].keys()
    for index, state in a["optimizer"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"][index][name])), (index, name)


def test_a_skipped_step_advances_only_the_global_step():
    """The NaN step (global step 3) leaves weights, EMA and its counter, the schedule and AdamW's state
    exactly as they were; the clean step before it moved every one of them."""
    torch.manual_seed(0)
    model = PoisonedDiffusion(bad_steps={3}, channels=1, image_size=8, base_channels=8, channel_mults=(1,),
                              num_res_blocks=1, attention_resolutions=(), dropout=0.0, norm_groups=4,
                              objective={"name": "vp", "timesteps": 20}, ema={"name": "exponential", "decay": 0.9}, lr=1e-3, warmup_steps=2,
                              lr_schedule="cosine")
    states = {}

    class Snap(L.Callback):
        def on_train_batch_start(self, tr, pl, batch, idx):
            states[tr.global_step] = training_state(tr, pl)

    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    data = DataLoader(TensorDataset(images, torch.zeros(40, dtype=torch.long)), batch_size=8)
    guard = NonFiniteGuard(max_consecutive=3)
    t = L.Trainer(max_steps=5, callbacks=[guard, Snap()], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    t.fit(model, data)
    assert guard.skipped == 1
    before, after = states[3], states[4]
    assert after["global_step"] == before["global_step"] + 1  # batches are counted, skipped or not
    assert_same_state(before, after)
    # The test can see a change: the clean step 2 moved each piece of state.
    clean_before, clean_after = states[2], states[3]
    assert clean_after["ema_updates"] == clean_before["ema_updates"] + 1
    assert clean_after["last_epoch"] == clean_before["last_epoch"] + 1 and clean_after["lr"] != clean_before["lr"]
    assert not torch.equal(clean_after["ema"][0], clean_before["ema"][0])
    assert not torch.equal(clean_after["optimizer"][0]["exp_avg"], clean_before["optimizer"][0]["exp_avg"])


def test_a_skipped_gan_phase_holds_the_schedule():
    from tests.models.test_vqgan import tiny_vqgan

    torch.manual_seed(0)
    model = tiny_vqgan(disc_start=0, warmup_steps=4)
    images = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images[16:32] = float("nan")  # the second of three batches
    data = DataLoader(TensorDataset(images, torch.zeros(48, dtype=torch.long)), batch_size=16)
    guard = NonFiniteGuard(max_consecutive=5)
    t = L.Trainer(max_epochs=1, callbacks=[guard], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    t.fit(model, data)
    assert t.lr_scheduler_configs[0].scheduler.last_epoch == 2  # two trained generator steps, not three
    assert t.global_step == 4  # manual optimization counts only the steps taken: two phases of two clean batches
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_model_guards_its_own_steps_without_the_callback():
    """The guard is the module's hook: a Trainer without NonFiniteGuard still skips the NaN step."""
    model = Poisoned(bad_steps={2})
    snapshots = {}

    class Snap(L.Callback):
        def on_train_batch_start(self, tr, pl, batch, idx):
            snapshots[tr.global_step] = pl.net.weight.detach().clone()

        def on_train_batch_end(self, tr, pl, outputs, batch, idx):
            snapshots[f"skips {idx}"] = pl.skipped_optimizer_steps()

    L.Trainer(max_steps=4, callbacks=[Snap()], logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu").fit(model, loader())
    assert torch.equal(snapshots[2], snapshots[3]) and not torch.equal(snapshots[1], snapshots[2])
    assert [snapshots[f"skips {i}"] for i in range(4)] == [(False,), (False,), (True,), (False,)]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_gan_that_keeps_failing_stops_at_the_limit_too():
    """Both VQ-GAN phases go through the same guard, so their skips count toward run.max_nonfinite_steps."""
    from tests.models.test_vqgan import tiny_vqgan

    model = tiny_vqgan(disc_start=0)
    images = torch.full((64, 1, 8, 8), float("nan"))
    data = DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=16)
    t = L.Trainer(max_epochs=1, callbacks=[NonFiniteGuard(max_consecutive=3)], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with pytest.raises(TrainingError, match="3 optimizer steps in a row") as info:
        t.fit(model, data)
    assert "recon=nan" in str(info.value)  # the generator's loss terms are recorded like every family's


def test_a_gan_whose_gradients_keep_failing_stops_at_the_limit():
    """Finite losses, non-finite gradients: each phase records one decision, so the streak still grows."""
    from tests.models.test_vqgan import tiny_vqgan

    model = tiny_vqgan(disc_start=0)
    for p in model.parameters():
        if p.requires_grad:
            p.register_hook(lambda grad: grad * float("inf"))
    data = DataLoader(TensorDataset(torch.rand(64, 1, 8, 8) * 2 - 1, torch.zeros(64, dtype=torch.long)), batch_size=16)
    t = L.Trainer(max_epochs=1, callbacks=[NonFiniteGuard(max_consecutive=3)], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with pytest.raises(TrainingError, match="3 optimizer steps in a row"):
        t.fit(model, data)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_gan_phases_clip_with_the_guards_norm_and_match_lightnings_clipping(monkeypatch):
    from lit_gen.models.vqgan import VQGAN
    from tests.models.test_vqgan import tiny_vqgan

    class LightningClippedVQGAN(VQGAN):
        def clip_gradients_by_norm(self, optimizer, max_norm, gradients):
            self.clip_gradients(optimizer, max_norm, "norm")

    def train(cls):
        torch.manual_seed(0)
        model = tiny_vqgan(disc_start=0, grad_clip=0.01, disc_grad_clip=0.02)
        model.__class__ = cls
        images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
        L.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, accelerator="cpu").fit(
            model, DataLoader(TensorDataset(images, torch.zeros(32, dtype=torch.long)), batch_size=16))
        return model

    second_passes = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: second_passes.append(1) or original(*a, **k))
    guarded = train(VQGAN)
    assert not second_passes  # each phase clipped with the norm its guard computed
    plain = train(LightningClippedVQGAN)
    assert len(second_passes) == 4  # two batches, two phases each
    for a, b in zip(guarded.parameters(), plain.parameters()):
        assert torch.equal(a, b)
