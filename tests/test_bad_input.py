"""Every bad input a user can give: exit code 2, one message naming the problem and the fix, no traceback,
and nothing left behind that a later run could mistake for a good one."""

from __future__ import annotations

import pytest
import torch

from lit_gen import evaluate, fit, sample
from lit_gen.cli import run_main
from tests.fakes import write_fake_mnist


def exit_code_and_error(main, args, capsys):
    with pytest.raises(SystemExit) as info:
        run_main(main, args)
    err = capsys.readouterr().err
    return info.value.code, err


def assert_one_clear_line(code, err, *needles):
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


@pytest.mark.parametrize(
    "config, overrides, needles",
    [
        ("vae_digits", ["model.name=vqvae", "model.quantizer.num_codes=0"], ["model.quantizer.num_codes"]),
        ("vae_digits", ["model.channels=3"], ["model.channels=3 does not match the dataset", "Remove model.channels"]),
        ("vae_digits", ["data.val_fraction=1.5"], ["val_fraction"]),
        ("vae_digits", ["data.batch_size=0"], ["batch_size"]),
        ("vae_digits", ["trainer.precision=17"], ["trainer"]),
        ("ddpm_digits", ["model.objective.beta_start=0.02", "model.objective.beta_end=0.0001"], ["beta_end"]),
        ("ddpm_digits", ["data.image_size=6"], ["image_size", "6"]),
        ("ddpm_digits", ["model.guidance_scale=3"], ["model.guidance_scale: unknown key"]),
        ("vae_digits", ["model.beta=nan"], ["model.beta: expected a finite number, got nan"]),
        ("vae_digits", ["model.beta=inf"], ["model.beta: expected a finite number, got inf"]),
        ("vae_digits", ["--model.lr", "inf"], ["model.lr: expected a finite number, got inf"]),
        ("ddpm_digits", ["model={'betas': [0.9, .nan]}"], ["model.betas[1]: expected a finite number"]),
        ("vae_digits", ["trainer.gradient_clip_val=-inf"], ["trainer.gradient_clip_val", "-inf"]),
    ],
)
def test_out_of_range_values(tmp_path, capsys, config, overrides, needles):
    code, err = exit_code_and_error(fit.main, ["--config", f"configs/{config}.yaml", f"run.output_dir={tmp_path}",
                                               "logger.wandb=false", *overrides], capsys)
    assert_one_clear_line(code, err, *needles)
    assert not any(tmp_path.iterdir())


def test_truncated_dataset_file(tmp_path, capsys):
    write_fake_mnist(tmp_path / "data")
    images = tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    out = tmp_path / "runs"
    code, err = exit_code_and_error(fit.main, ["--config", "configs/vae_mnist.yaml", f"data.root={tmp_path / 'data'}",
                                               f"run.output_dir={out}", "logger.wandb=false"], capsys)
    assert_one_clear_line(code, err, "train-images-idx3-ubyte")
    assert not out.exists() or not any(out.rglob("*.ckpt"))


@pytest.mark.parametrize("cli", [sample.main, evaluate.main], ids=["sample", "evaluate"])
def test_checkpoint_paths_that_are_not_checkpoints(tmp_path, capsys, cli):
    code, err = exit_code_and_error(cli, ["--ckpt", str(tmp_path / "missing.ckpt")], capsys)
    assert_one_clear_line(code, err, "does not exist")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00garbage")
    code, err = exit_code_and_error(cli, ["--ckpt", str(junk)], capsys)
    assert_one_clear_line(code, err, "not a readable lit_gen checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    code, err = exit_code_and_error(cli, ["--ckpt", str(tmp_path / "foreign.ckpt")], capsys)
    assert_one_clear_line(code, err, "not written by lit_gen")


def test_prior_on_a_checkpoint_of_another_family(tmp_path, capsys):
    from lit_gen.models.vae import VAE

    model = VAE(channels=1, image_size=8, hidden_dims=(8,), latent_dim=2)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "vae.ckpt")
    code, err = exit_code_and_error(fit.main, ["--config", "configs/prior_vqvae_digits.yaml", f"run.output_dir={tmp_path / 'runs'}",
                                               f"model.first_stage={tmp_path / 'vae.ckpt'}", "logger.wandb=false"], capsys)
    assert_one_clear_line(code, err, "vae")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config, overrides, needles", [
    ("ddpm_digits", [], ["holds a 'vae' model", "does not fit the Diffusion"]),
    ("vae_digits", ["model.latent_dim=3"], ["does not fit the VAE", "reshaped"]),
])
def test_resuming_a_checkpoint_of_another_model(tmp_path, capsys, config, overrides, needles):
    from lit_gen.models.vae import VAE

    model = VAE(channels=1, image_size=8, hidden_dims=(128, 64), latent_dim=8)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "pytorch-lightning_version": "2.6.0",
                  "global_step": 0, "loops": {}, "optimizer_states": []}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "vae.ckpt")
    code, err = exit_code_and_error(fit.main, ["--config", f"configs/{config}.yaml", "--resume", str(tmp_path / "vae.ckpt"),
                                               "logger.wandb=false", *overrides], capsys)
    assert_one_clear_line(code, err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.ckpt"]  # no run folder beside it


def test_resuming_a_checkpoint_of_weights_alone(tmp_path, capsys):
    from lit_gen.config import load_config
    from lit_gen.models.vae import VAE

    model = VAE(**load_config("configs/vae_digits.yaml").model_kwargs())
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "weights.ckpt")
    code, err = exit_code_and_error(fit.main, ["--config", "configs/vae_digits.yaml", "--resume", str(tmp_path / "weights.ckpt"),
                                               "logger.wandb=false"], capsys)
    assert_one_clear_line(code, err, "no training state", "optimizer_states")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.ckpt"]
