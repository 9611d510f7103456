"""Every shipped config validates, builds, and trains one CPU step on fake data in its dataset's real format."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_gen.cli import run_main
from lit_gen.config import load_config
from lit_gen.fit import main
from tests.fakes import write_fake_celeba, write_fake_cifar10, write_fake_mnist

CONFIGS = sorted(p for p in Path("configs").glob("*.yaml") if p.name != "base.yaml")


def needs_first_stage(path: Path) -> bool:
    """Two-stage configs point at a trained first stage: tests/test_two_stage.py trains both stages and samples."""
    return bool(load_config(path).model.get("first_stage"))


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_mnist(root)
    write_fake_cifar10(root)
    write_fake_celeba(root)
    return root


def test_there_is_a_config_per_family_and_dataset():
    names = {p.stem for p in CONFIGS}
    assert {"ae_mnist", "dae_mnist", "vae_mnist", "vae_cifar", "vae_celeba", "quickstart"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_names_no_import_path(path):
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    for section in ("model", "data"):
        assert ":" not in str((raw.get(section) or {}).get("name", "")), "configs name registry entries, never import paths"
    assert cfg.model["name"] and cfg.data["name"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_step_on_fake_data(path, fake_root, tmp_path, capsys):
    if needs_first_stage(path):
        pytest.skip("two-stage config: trained end to end, stage 1 then stage 2, in tests/test_two_stage.py")
    args = [
        "--config", str(path),
        f"data.root={fake_root}", "data.batch_size=2", "data.num_workers=0", "data.persistent_workers=false",
        "trainer.max_steps=1", "trainer.max_epochs=1", "trainer.limit_val_batches=1", "trainer.accelerator=cpu",
        "trainer.devices=1", "logger.wandb=false", "run.num_samples=0", f"run.output_dir={tmp_path}",
    ]
    model = load_config(path).model
    if model.get("base_channels", 0) > 64:
        # The paper-scale U-Nets (36M-79M parameters) keep their structure at a quarter of the width.
        args.append("model.base_channels=32")
    if model.get("perceptual_weight"):
        args.append("model.perceptual_weight=0")  # LPIPS needs ImageNet backbone weights, not available offline
    with pytest.raises(SystemExit) as info:
        run_main(main, args)
    assert info.value.code == 0, capsys.readouterr().err
    assert list(tmp_path.glob("*/*/checkpoints/last.ckpt")), "one step must leave a checkpoint"


DIFFUSION_CONFIGS = [p for p in CONFIGS if load_config(p).model["name"] == "diffusion"]


@pytest.mark.parametrize("path", DIFFUSION_CONFIGS, ids=lambda p: p.stem)
def test_every_block_of_a_shipped_diffusion_config_sees_the_noise_level_and_the_label(path):
    from lit_gen.build import build_model
    from tests.conditioning import assert_sees_conditioning

    args = dict(load_config(path).model)
    if args.get("first_stage"):
        pytest.skip("latent diffusion: its U-Net is built on a trained first stage (tests/test_two_stage.py checks it)")
    assert args["conditioning"] == "scale_shift"
    if args["base_channels"] > 64:
        args["base_channels"] = 32  # the same structure at a quarter of the width, as above
    assert_sees_conditioning(build_model(args.pop("name"), args))


def test_a_config_that_would_build_blind_blocks_is_refused_with_the_fix():
    from lit_gen.errors import ConfigError

    with pytest.raises(ConfigError, match=r"width 32.*one channel per GroupNorm group.*conditioning=scale_shift.*norm_groups=8"):
        load_config("configs/ddpm_digits.yaml", ["model.conditioning=add"])
    cfg = load_config("configs/ddpm_digits.yaml", ["model.conditioning=add", "model.norm_groups=8"])  # 4 channels per group
    assert cfg.model["conditioning"] == "add"
