"""python -m lit_gen.sample end to end on a real digits run: grids, tensors, interpolations, scatter plots."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from lit_gen import sample
from lit_gen.checkpoints import load_model
from lit_gen.cli import EXIT_USER_ERROR, run_main
from lit_gen.data.digits import DigitsDataModule
from lit_gen.errors import EvaluationError
from lit_gen.models.vae import VAE
from tests.eval_helpers import digits_run


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return digits_run(tmp_path_factory) / "checkpoints" / "last.ckpt"


def run_sample(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        run_main(sample.main, args)
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_sample_cli_writes_grid_tensor_interpolation_and_scatter(ckpt, tmp_path, capsys):
    code, out, _ = run_sample(["--ckpt", str(ckpt), "--num", "12", "--out", str(tmp_path / "grid.png"), "--scale", "1",
                               "--tensor", str(tmp_path / "s.pt"), "--interpolate", "5", "--pairs", "3",
                               "--latent-scatter", str(tmp_path / "scatter.png"), "--device", "cpu"], capsys)
    assert code == 0, out
    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    assert saved["images"].shape == (12, 1, 8, 8) and saved["labels"] is None
    assert 0.0 <= saved["images"].min() and saved["images"].max() <= 1.0
    # A 4x3 grid of 8x8 images with 1-pixel borders; the interpolation has 3 rows (pairs) of 5 columns (lambdas).
    assert Image.open(tmp_path / "grid.png").size == (4 * 9 + 1, 3 * 9 + 1)
    assert Image.open(tmp_path / "grid_interpolation.png").size == (5 * 9 + 1, 3 * 9 + 1)
    assert Image.open(tmp_path / "scatter.png").size[0] > 300

    code, _, _ = run_sample(["--ckpt", str(ckpt), "--num", "12", "--out", str(tmp_path / "again.png"),
                             "--tensor", str(tmp_path / "again.pt")], capsys)
    assert torch.equal(torch.load(tmp_path / "again.pt", weights_only=True)["images"], saved["images"])  # same seed
    run_sample(["--ckpt", str(ckpt), "--num", "12", "--seed", "1", "--out", str(tmp_path / "other.png"),
                "--tensor", str(tmp_path / "other.pt")], capsys)
    assert not torch.equal(torch.load(tmp_path / "other.pt", weights_only=True)["images"], saved["images"])


def test_interpolation_rows_run_from_the_second_image_to_the_first(ckpt):
    model = load_model(ckpt)
    datamodule = DigitsDataModule()
    grid = sample.interpolation_grid(model, datamodule, pairs=2, steps=4, seed=0)
    assert grid.shape == (2 * 4, 1, 8, 8)
    images, _ = sample._test_images(datamodule, 4, seed=0)
    with torch.no_grad():
        ends = ((model.decode(model.encode(images)) + 1) / 2).clamp(0, 1)
    rows = grid.view(2, 4, 1, 8, 8)
    assert torch.allclose(rows[:, 0], ends[2:], atol=1e-6)  # lambda = 0: h2 (the pair's second image)
    assert torch.allclose(rows[:, -1], ends[:2], atol=1e-6)  # lambda = 1: h1


@pytest.mark.parametrize("latent_dim", [2, 3])
def test_latent_scatter_plots_small_latents_directly(latent_dim, tmp_path):
    torch.manual_seed(0)
    model = VAE(channels=1, image_size=8, hidden_dims=(8,), latent_dim=latent_dim)
    path = sample.latent_scatter(model, DigitsDataModule(), tmp_path / "s.png", max_points=100)
    assert path.is_file() and Image.open(path).size[0] > 300


def test_labels_give_one_row_per_listed_class():
    assert sample.parse_labels("0-9", 10) == list(range(10))
    assert sample.parse_labels("3,3,5", 10) == [3, 3, 5]
    assert sample.parse_labels("0-2,7", 10) == [0, 1, 2, 7]

    class Conditional:
        conditional, num_classes = True, 10

    labels, per_row = sample.grid_labels(Conditional(), "3,3,5", 12)
    assert per_row == 4 and labels.tolist() == [3] * 8 + [5] * 4
    labels, per_row = sample.grid_labels(Conditional(), None, 20)  # default: every class, one row each
    assert per_row == 2 and labels.tolist()[::2] == list(range(10))
    with pytest.raises(EvaluationError, match="outside the model's classes 0-9"):
        sample.parse_labels("8-11", 10)
    with pytest.raises(EvaluationError, match="write a range"):
        sample.parse_labels("3-x", 10)


def test_a_count_that_does_not_fill_whole_rows_is_rounded_down_with_a_warning(caplog):
    class Conditional:
        conditional, num_classes = True, 10

    with caplog.at_level(logging.WARNING, logger="lit_gen.sample"):
        labels, per_row = sample.grid_labels(Conditional(), None, 64)
    assert per_row == 6 and len(labels) == 60
    assert "--num 64 is not a multiple of the 10 label rows: drawing 6 per label (60 images)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lit_gen.sample"):
        sample.grid_labels(Conditional(), None, 70)
    assert caplog.text == ""


def test_unconditional_models_refuse_labels_and_sampler_options(ckpt, tmp_path, capsys):
    code, _, err = run_sample(["--ckpt", str(ckpt), "--labels", "0-9", "--out", str(tmp_path / "x.png")], capsys)
    assert code == EXIT_USER_ERROR and "unconditional; leave --labels out" in err
    code, _, err = run_sample(["--ckpt", str(ckpt), "--sampler", "ddim", "--out", str(tmp_path / "x.png")], capsys)
    assert code == EXIT_USER_ERROR and "does not take sampler" in err


@pytest.mark.parametrize("objective", ["edm", "flow"])
def test_new_objectives_train_through_fit_and_sample_through_the_cli(objective, tmp_path, capsys):
    from lit_gen import fit

    code = fit.main(["--config", "configs/ddpm_digits.yaml", f"model.objective={objective}", "model.base_channels=8",
                     "model.attention_resolutions=[]", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     "trainer.limit_val_batches=1", "logger.wandb=false", "trainer.accelerator=cpu", "run.num_samples=4",
                     "run.sample_options={sampler: heun, steps: 2}", "eval.report=false", f"run.output_dir={tmp_path}",
                     "--run-id", objective])
    assert code == 0
    ckpt = tmp_path / "ddpm_digits" / objective / "checkpoints" / "last.ckpt"
    assert load_model(ckpt).hparams.objective["name"] == objective
    tensors = {}
    for sampler in ("euler", "heun", "dpmpp_2m"):
        code, out, err = run_sample(["--ckpt", str(ckpt), "--num", "4", "--sampler", sampler, "--steps", "3",
                                     "--out", str(tmp_path / f"{sampler}.png"), "--tensor", str(tmp_path / f"{sampler}.pt"),
                                     "--device", "cpu"], capsys)
        assert code == 0, err
        tensors[sampler] = torch.load(tmp_path / f"{sampler}.pt", weights_only=True)
        assert tensors[sampler]["images"].shape == (4, 1, 8, 8)
        assert tensors[sampler]["sample_options"] == {"sampler": sampler, "steps": 3}
    assert not torch.equal(tensors["euler"]["images"], tensors["heun"]["images"])
    # The ancestral sampler and the discrete spacings are for a discrete (vp) objective: one line, exit 2.
    code, _, err = run_sample(["--ckpt", str(ckpt), "--sampler", "ddpm", "--out", str(tmp_path / "x.png")], capsys)
    assert code == EXIT_USER_ERROR and "needs a discrete (vp) objective" in err
    code, _, err = run_sample(["--ckpt", str(ckpt), "--spacing", "leading", "--out", str(tmp_path / "x.png")], capsys)
    assert code == EXIT_USER_ERROR and "leave spacing unset" in err


def test_spacing_and_recompute_eps_flags_reach_a_ddpm_checkpoint(tmp_path, capsys):
    from lit_gen import fit

    code = fit.main(["--config", "configs/ddpm_digits.yaml", "model.objective.min_snr_gamma=5", "model.base_channels=8",
                     "model.attention_resolutions=[]", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     "trainer.limit_val_batches=1", "logger.wandb=false", "trainer.accelerator=cpu", "run.num_samples=4",
                     "run.sample_options={steps: 2}", "eval.report=false", f"run.output_dir={tmp_path}", "--run-id", "snr"])
    assert code == 0
    ckpt = tmp_path / "ddpm_digits" / "snr" / "checkpoints" / "last.ckpt"
    images = {}
    for name, flags in [("plain", []), ("leading", ["--spacing", "leading"]), ("recompute", ["--recompute-eps"]),
                        ("network", ["--no-recompute-eps"])]:
        code, _, err = run_sample(["--ckpt", str(ckpt), "--num", "4", "--sampler", "ddim", "--steps", "5", *flags, "--device", "cpu",
                                   "--out", str(tmp_path / f"{name}.png"), "--tensor", str(tmp_path / f"{name}.pt")], capsys)
        assert code == 0, err
        images[name] = torch.load(tmp_path / f"{name}.pt", weights_only=True)
    assert images["leading"]["sample_options"] == {"sampler": "ddim", "steps": 5, "spacing": "leading"}
    assert images["recompute"]["sample_options"] == {"sampler": "ddim", "steps": 5, "recompute_eps": True}
    assert images["network"]["sample_options"] == {"sampler": "ddim", "steps": 5, "recompute_eps": False}
    assert torch.equal(images["plain"]["images"], images["recompute"]["images"])  # the default
    assert not torch.equal(images["plain"]["images"], images["network"]["images"])
    assert not torch.equal(images["plain"]["images"], images["leading"]["images"])
    code, _, err = run_sample(["--ckpt", str(ckpt), "--spacing", "quadratic", "--out", str(tmp_path / "x.png")], capsys)
    assert code == EXIT_USER_ERROR and "unknown spacing 'quadratic'" in err
