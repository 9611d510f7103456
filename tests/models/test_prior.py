"""lit_gen.models.prior: the two-stage pipeline (VQ-VAE -> code prior -> samples) on real digits."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen.build import build_model
from lit_gen.checkpoints import load_model
from lit_gen.data.digits import load_digits_uint8
from lit_gen.errors import CheckpointError, ConfigError
from lit_gen.models.prior import CodePrior
from lit_gen.models.vqvae import VQVAE


def digits_loader(n: int = 512, batch_size: int = 32) -> DataLoader:
    images, labels = load_digits_uint8()
    x = images[:n].float() / 127.5 - 1
    return DataLoader(TensorDataset(x, labels[:n]), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def trainer(max_steps: int, callbacks=()) -> L.Trainer:
    return L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False, log_every_n_steps=1,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))


@pytest.fixture(scope="module")
def first_stage_ckpt(tmp_path_factory):
    """Stage 1: a tiny VQ-VAE trained a few steps on digits, saved as a Lightning checkpoint."""
    torch.manual_seed(0)
    model = VQVAE(channels=1, image_size=8, hidden_channels=16, num_res_blocks=1, num_downsamples=1,
                  quantizer={"name": "vq", "num_codes": 16, "code_dim": 8, "codebook_ema_decay": 0.9,
                             "restart_dead_codes": True, "dead_code_steps": 5}, lr=3e-3)
    fit = trainer(max_steps=30)
    fit.fit(model, digits_loader())
    path = tmp_path_factory.mktemp("stage1") / "vqvae.ckpt"
    fit.save_checkpoint(path)
    return path


class NllRecorder(L.Callback):
    def __init__(self):
        self.nll = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.nll.append(trainer.callback_metrics["train/nll_step"].item())


def test_two_stage_pipeline_trains_samples_and_the_prior_checkpoint_stands_alone(first_stage_ckpt, tmp_path):
    stage1 = tmp_path / "stage1.ckpt"
    stage1.write_bytes(first_stage_ckpt.read_bytes())
    torch.manual_seed(0)
    prior = build_model("prior", dict(first_stage=str(stage1), channels=1, image_size=8, n_layer=2, n_head=2, n_embd=32,
                                         lr=3e-3))
    # Vocabulary and sequence length come from the first stage, not from the config.
    assert prior.transformer.vocab_size == 16 and prior.transformer.block_size == 16
    frozen = {k: v.clone() for k, v in prior.first_stage.state_dict().items()}

    recorder = NllRecorder()
    fit = trainer(max_steps=40, callbacks=[recorder])
    fit.fit(prior, digits_loader())
    assert sum(recorder.nll[-5:]) / 5 < 0.8 * recorder.nll[0]
    assert all(torch.equal(frozen[k], v) for k, v in prior.first_stage.state_dict().items())
    assert not prior.first_stage.training and not any(p.requires_grad for p in prior.first_stage.parameters())

    grid = prior.sample(8, generator=torch.Generator().manual_seed(0))
    again = prior.sample(8, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (8, 1, 8, 8) and torch.equal(grid, again)
    assert 0 <= grid.min() and grid.max() <= 1
    codes = prior.transformer.generate(8, generator=torch.Generator().manual_seed(0))
    assert 0 <= codes.min() and codes.max() < 16
    assert torch.equal(grid, (prior.first_stage.decode_indices(codes.view(8, 4, 4)) + 1) / 2)

    fit.save_checkpoint(tmp_path / "prior.ckpt")
    stage1.unlink()  # a prior checkpoint must sample without its first-stage file
    loaded = load_model(tmp_path / "prior.ckpt")
    assert isinstance(loaded, CodePrior)
    assert torch.equal(loaded.sample(8, generator=torch.Generator().manual_seed(0)), grid)


def test_class_conditional_prior_takes_labels(first_stage_ckpt):
    torch.manual_seed(0)
    prior = build_model("prior", dict(first_stage=str(first_stage_ckpt), n_layer=1, n_head=2, n_embd=16, num_classes=10))
    images, labels = next(iter(digits_loader(32)))
    assert torch.isfinite(prior.loss((images, labels)).total)
    labels = torch.arange(4)
    a = prior.sample(4, labels=labels, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, 1, 8, 8)
    assert prior.sample(4, generator=torch.Generator().manual_seed(1)).shape == (4, 1, 8, 8)  # labels drawn
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        prior.sample(2, labels=torch.tensor([3, 10]))
    unconditional = build_model("prior", dict(first_stage=str(first_stage_ckpt), n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.sample(2, labels=torch.tensor([0, 1]))


def test_bad_first_stage_or_shape_are_user_errors(first_stage_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_model("prior", dict(first_stage=str(tmp_path / "missing.ckpt")))
    with pytest.raises(ConfigError, match="image_size=16 .* differs from the first stage's image_size=8"):
        build_model("prior", dict(first_stage=str(first_stage_ckpt), image_size=16))
    # The model reads no file: a path without the builder's spec is refused with the way to build it.
    with pytest.raises(ConfigError, match=r"a model never opens files itself.*lit_gen.build.build_model"):
        CodePrior(first_stage=str(first_stage_ckpt))


@pytest.mark.parametrize("quantizer", [{"name": "fsq", "levels": [4, 2, 2]}, {"name": "lfq", "num_codes": 16},
                                       {"name": "vq", "num_codes": 16, "code_dim": 4, "rotation_trick": True}])
def test_a_prior_and_latent_diffusion_work_on_every_quantizer(tmp_path, quantizer):
    torch.manual_seed(0)
    stage = VQVAE(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1, lr=3e-3,
                  quantizer=quantizer)
    fit = trainer(max_steps=5)
    fit.fit(stage, digits_loader(128))
    fit.save_checkpoint(tmp_path / "stage.ckpt")

    prior = build_model("prior", dict(first_stage=str(tmp_path / "stage.ckpt"), n_layer=1, n_head=2, n_embd=16))
    assert prior.transformer.vocab_size == 16  # the quantizer's codebook, whatever it is
    trainer(max_steps=3).fit(prior, digits_loader(128))
    codes = prior.transformer.generate(4, generator=torch.Generator().manual_seed(0))
    assert 0 <= codes.min() and codes.max() < 16
    images = prior.sample(4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, (prior.first_stage.decode_indices(codes.view(4, 4, 4)) + 1) / 2)

    ldm = build_model("diffusion", dict(channels=1, image_size=8, base_channels=8, channel_mults=(1,), num_res_blocks=1,
                                        attention_resolutions=(), norm_groups=4, first_stage=str(tmp_path / "stage.ckpt"),
                                        objective={"name": "vp", "timesteps": 20}, ema={"name": "exponential", "decay": 0.0}))
    assert ldm.diffusion_shape == (stage.quantizer.code_dim, 4, 4)
    trainer(max_steps=2).fit(ldm, digits_loader(64))
    out = ldm.sample(2, generator=torch.Generator().manual_seed(0), steps=3)
    assert out.shape == (2, 1, 8, 8) and 0 <= out.min() and out.max() <= 1
