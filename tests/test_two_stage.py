"""The two-stage configs end to end, as a user runs them: stage 1, stage 2 on its checkpoint, samples.

Each stage-2 config documents, in its opening comments, the ``python -m lit_gen.fit`` command of
its first stage and its own command pointed at the first stage's checkpoint. These tests run
exactly those commands through the CLI's ``main`` (shrunk by overrides appended after the
documented ones: tiny networks, three steps, fake data in the real on-disk format), then move the
stage-1 checkpoint away and draw a grid with ``python -m lit_gen.sample`` in a fresh process from
the stage-2 checkpoint alone. The fits run in this process: a new one costs ~5 s of imports each; the
sampling processes are forked by one launcher that imported torch and Lightning once (``tests/processes.py``).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_gen.cli import run_main
from lit_gen.config import load_config
from lit_gen.fit import main as fit_main
from tests.conftest import cli_env
from tests.fakes import write_fake_celeba
from tests.processes import Launcher

REPO = Path(__file__).resolve().parents[1]

#: Appended to every fit: CPU, no W&B, one epoch of three training batches and one validation batch.
QUICK = ("data.num_workers=0", "data.persistent_workers=false", "trainer.accelerator=cpu", "trainer.devices=1",
         "logger.wandb=false", "trainer.limit_train_batches=3", "trainer.max_epochs=1", "trainer.limit_val_batches=1")


@dataclass(frozen=True)
class Pipeline:
    """One stage-2 config with the overrides that make both of its stages tiny."""

    stage2: str
    stage1_tiny: tuple[str, ...]
    stage2_tiny: tuple[str, ...]
    sample_args: tuple[str, ...]  # for python -m lit_gen.sample
    images: int  # how many images the grid holds
    grid_columns: int
    image_shape: tuple[int, int, int]  # (C, H, W) of one sample
    celeba: bool = False


PIPELINES = {
    "ldm_digits": Pipeline(
        "ldm_digits",
        stage1_tiny=("model.conv_channels=[8]",),
        stage2_tiny=("model.base_channels=8", "model.num_res_blocks=1", "model.objective.timesteps=20", "model.warmup_steps=1",
                     "run.sample_options={'steps': 4}"),
        sample_args=("--num", "6", "--nrow", "3", "--steps", "4"),
        images=6, grid_columns=3, image_shape=(1, 8, 8),
    ),
    "prior_vqvae_digits": Pipeline(
        "prior_vqvae_digits",
        stage1_tiny=("model.hidden_channels=8", "model.quantizer.num_codes=16", "model.quantizer.code_dim=4"),
        stage2_tiny=("model.n_layer=1", "model.n_head=2", "model.n_embd=16"),
        # Class-conditional: two images of each of the labels 0..3, one row per label.
        sample_args=("--num", "8", "--labels", "0-3"),
        images=8, grid_columns=2, image_shape=(1, 8, 8),
    ),
    "prior_vqgan_celeba": Pipeline(
        "prior_vqgan_celeba",
        # LPIPS needs ImageNet VGG weights, not available offline; the discriminator starts at step 1
        # so both GAN phases run.
        stage1_tiny=("data.image_size=16", "data.batch_size=2", "model.hidden_channels=8", "model.num_res_blocks=1",
                     "model.quantizer.num_codes=16", "model.quantizer.code_dim=4", "model.perceptual_weight=0", "model.disc_start=1",
                     "model.disc_channels=8", "model.disc_layers=2"),
        stage2_tiny=("data.image_size=16", "data.batch_size=2", "model.n_layer=1", "model.n_head=2", "model.n_embd=16",
                     "model.warmup_steps=1", "run.sample_options={'temperature': 1.0, 'top_k': 5}"),
        sample_args=("--num", "4"),
        images=4, grid_columns=2, image_shape=(3, 16, 16), celeba=True,
    ),
}


def documented_fit_commands(config: Path) -> list[list[str]]:
    """The ``python -m lit_gen.fit`` commands in a config's comments, as argument lists (continuations joined)."""
    commands, pending = [], ""
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            continue
        text = pending + line.lstrip("#").strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.startswith("python -m lit_gen.fit "):
            commands.append(shlex.split(text)[3:])
    return commands


def config_of(args: list[str]) -> str:
    return args[args.index("--config") + 1]


def stage_commands(stage2: str) -> tuple[list[str], list[str]]:
    """(stage-1 args, stage-2 args) as documented in ``configs/<stage2>.yaml``."""
    config = REPO / "configs" / f"{stage2}.yaml"
    commands = documented_fit_commands(config)
    own = [c for c in commands if config_of(c) == f"configs/{stage2}.yaml"]
    others = [c for c in commands if config_of(c) != f"configs/{stage2}.yaml"]
    assert len(own) == 1 and len(others) == 1, (
        f"{config.name} must document its first stage's fit command and its own, one each; found {commands}")
    return others[0], own[0]


def test_every_two_stage_config_is_trained_here():
    """A new stage-2 config (one with model.first_stage) must get an entry above, or it is never trained in a test."""
    two_stage = {p.stem for p in (REPO / "configs").glob("*.yaml")
                 if p.name != "base.yaml" and load_config(p).model.get("first_stage")}
    assert two_stage == set(PIPELINES)


def test_documented_commands_are_found_with_their_overrides():
    stage1, stage2 = stage_commands("ldm_digits")
    assert stage1[:2] == ["--config", "configs/vae_digits.yaml"]
    assert "model.architecture=conv" in stage1 and "model.latent_dim=4" in stage1  # a line continuation joined
    assert stage2 == ["--config", "configs/ldm_digits.yaml",
                      "model.first_stage=runs/vae_digits_conv/<id>/checkpoints/last.ckpt"]


@pytest.fixture(scope="module")
def sampling():
    """Starts each pipeline's ``python -m lit_gen.sample``: a new process that never saw its first stage."""
    launcher = Launcher()
    yield launcher
    launcher.close()


def fit(args: list[str], capsys) -> None:
    """``python -m lit_gen.fit args``, in this process."""
    with pytest.raises(SystemExit) as info:
        run_main(fit_main, args)
    assert info.value.code == 0, f"python -m lit_gen.fit {shlex.join(args)}\n{capsys.readouterr().err[-3000:]}"


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_two_stage_config_trains_both_stages_and_samples_from_the_second_alone(name, sampling, tmp_path, capsys):
    pipeline = PIPELINES[name]
    runs = tmp_path / "runs"
    data = ()
    if pipeline.celeba:
        write_fake_celeba(tmp_path / "data")
        data = (f"data.root={tmp_path / 'data'}",)
    stage1_args, stage2_args = stage_commands(pipeline.stage2)

    fit([*stage1_args, *data, *QUICK, *pipeline.stage1_tiny, f"run.output_dir={runs}", "run.num_samples=0"], capsys)
    # The documented stage-2 command names the path where the documented stage-1 run puts its checkpoint.
    (documented,) = [a.split("=", 1)[1] for a in stage2_args if a.startswith("model.first_stage=")]
    assert documented.startswith("runs/")
    (stage1_ckpt,) = runs.glob(documented.removeprefix("runs/").replace("<id>", "*"))

    stage2_args = [a for a in stage2_args if not a.startswith("model.first_stage=")]
    fit([*stage2_args, f"model.first_stage={stage1_ckpt}", *data, *QUICK, *pipeline.stage2_tiny,
         f"run.output_dir={runs}", "run.num_samples=4", "run.sample_every_n_epochs=1"], capsys)
    (stage2_run,) = (runs / load_config(REPO / "configs" / f"{name}.yaml").name).iterdir()
    stage2_ckpt = stage2_run / "checkpoints" / "last.ckpt"
    assert list((stage2_run / "samples").glob("*.png")), "stage 2 writes sample grids while it trains"

    # The frozen first stage travels inside the stage-2 checkpoint, unchanged by stage-2 training (bit for bit:
    # a frozen tensor is copied, never computed, so no rounding can enter).
    first, second = state_dict(stage1_ckpt), state_dict(stage2_ckpt)
    assert first and all(torch.equal(second[f"first_stage.{k}"], v) for k, v in first.items())

    stage1_ckpt.rename(tmp_path / "elsewhere.ckpt")  # sampling must not need the first-stage file
    grid, tensor = tmp_path / "grid.png", tmp_path / "samples.pt"
    done = sampling.run("lit_gen.sample", "--ckpt", str(stage2_ckpt), *pipeline.sample_args, "--scale", "1",
                        "--out", str(grid), "--tensor", str(tensor), "--device", "cpu", env=cli_env())
    assert done.returncode == 0, done.stderr[-3000:]
    images = torch.load(tensor, weights_only=True)["images"]
    assert images.shape == (pipeline.images, *pipeline.image_shape)
    assert torch.isfinite(images).all()  # a clamp keeps NaN
    # The CLI clamps to [0, 1], so the range proves nothing; these would fail on wrong samples: no two samples
    # are one image (RMS difference above one grey level; measured >= 0.038), and few pixels sit on the clamp's
    # bounds (measured <= 0.4%; images left in [-1, 1] would put about half of them at 0).
    flat = images.flatten(1).double()
    differences = ((flat[:, None] - flat[None]) ** 2).mean(-1).sqrt() + 2 * torch.eye(len(flat))
    assert differences.min() > 1 / 255, differences.min()
    assert ((images <= 0) | (images >= 1)).double().mean() < 0.05
    channels, height, width = pipeline.image_shape
    rows = math.ceil(pipeline.images / pipeline.grid_columns)
    with Image.open(grid) as picture:  # torchvision's make_grid: one pixel of padding around every image
        assert picture.size == (pipeline.grid_columns * (width + 1) + 1, rows * (height + 1) + 1)
        assert picture.mode == ("L" if channels == 1 else "RGB")
        pixels = torch.from_numpy(np.array(picture)).double()
    # The grid shows these very images, in order, row by row: each cell is 255 x the image, rounded (one grey
    # level of margin, so that a value rounding at .5 cannot decide it).
    pixels = pixels[None] if channels == 1 else pixels.permute(2, 0, 1)
    for k, image in enumerate(images.double()):
        row, column = divmod(k, pipeline.grid_columns)
        top, left = 1 + row * (height + 1), 1 + column * (width + 1)
        cell = pixels[:, top:top + height, left:left + width]
        assert (cell - (255 * image).round()).abs().max() <= 1, f"grid cell {k} is not sample {k}"
