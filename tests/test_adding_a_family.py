"""docs/adding-a-family.md works as written: its module, registry line and config train, save and sample."""

from __future__ import annotations

import re
import shutil

import torch

from lit_gen import registry
from lit_gen.checkpoints import load_model
from lit_gen.fit import main
from lit_gen.signatures import parameters
from tests.conftest import REPO

PAGE = REPO / "docs" / "adding-a-family.md"


def block(after_heading: str, language: str) -> str:
    """The first fenced ``language`` block after the heading that starts with ``after_heading``."""
    text = PAGE.read_text()
    section = text[text.index(after_heading):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_the_walkthrough_family_trains_saves_and_samples_through_the_cli(tmp_path, monkeypatch):
    (tmp_path / "pixel_gaussian.py").write_text(block("## 1. The module", "python"))
    monkeypatch.syspath_prepend(str(tmp_path))
    # The page's registry line, pointed at the module written above.
    line = block("## 2. The registry line", "python")
    assert '"pixel_gaussian": "lit_gen.models.pixel_gaussian:PixelGaussian"' in line
    monkeypatch.setitem(registry.MODELS, "pixel_gaussian", "pixel_gaussian:PixelGaussian")
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(REPO / "configs" / "base.yaml", configs / "base.yaml")
    (configs / "pixel_gaussian_digits.yaml").write_text(block("## 3. The config", "yaml"))

    cls = registry.resolve("model", "pixel_gaussian")
    schema = parameters(cls)
    assert schema["lr"].default == 1e-2 and "betas" in schema  # the optimizer arguments, forwarded, not restated

    out = tmp_path / "runs"
    code = main(["--config", str(configs / "pixel_gaussian_digits.yaml"), "--run-id", "walk", "trainer.max_epochs=2",
                 "logger.wandb=false", "trainer.accelerator=cpu", "run.num_samples=4", f"run.output_dir={out}"])
    assert code == 0
    model = load_model(out / "pixel_gaussian_digits" / "walk" / "checkpoints" / "last.ckpt")
    assert type(model).__name__ == "PixelGaussian" and model.hparams["lr"] == 1e-2
    images = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 8, 8) and 0.0 <= images.min() and images.max() <= 1.0
    # It learned something: the fitted mean moved from 0 towards the digits' mean image.
    assert model.mean.abs().mean() > 0.05
