"""docs/adding-an-objective.md works as written: its class, registry line and test, then training and sampling."""

from __future__ import annotations

import re

import pytest
import torch

from lit_gen import registry
from lit_gen.diffusion import objectives
from tests.conftest import REPO

PAGE = REPO / "docs" / "adding-an-objective.md"


def block(after_heading: str) -> str:
    text = PAGE.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after_heading):], re.S).group(1)


@pytest.fixture
def with_the_page_objective(monkeypatch):
    """The page's class inside lit_gen.diffusion.objectives and its registry line, as the page says to write them."""
    namespace = dict(vars(objectives))
    exec(block("## 1. The class"), namespace)
    monkeypatch.setattr(objectives, "VEObjective", namespace["VEObjective"], raising=False)
    table = dict(registry.OBJECTIVES)
    monkeypatch.setitem(registry.TABLES, "objective", table)
    exec(block("## 2. The registry line"), {"OBJECTIVES": table})
    return namespace["VEObjective"]


def test_the_page_objective_matches_its_closed_form(with_the_page_objective):
    from lit_gen.diffusion.objectives import TIME_SCALE
    from lit_gen.diffusion.samplers import sample
    from tests.diffusion.test_samplers import MU, STD

    namespace = {"VEObjective": with_the_page_objective, "TIME_SCALE": TIME_SCALE, "sample": sample, "MU": MU,
                 "STD": STD, "torch": torch}
    exec(block("## 3. The test"), namespace)
    namespace["test_ve_with_the_exact_network_reproduces_gaussian_data"]()


def test_a_config_selects_it_and_the_family_trains_and_samples_with_it(with_the_page_objective, tmp_path):
    from lit_gen.checkpoints import load_model
    from lit_gen.config import load_config
    from lit_gen.fit import main

    cfg = load_config(REPO / "configs" / "quickstart.yaml", ["model.objective={name: ve, sigma_max: 80}"])
    assert cfg.model["objective"] == {"name": "ve", "sigma_min": 0.01, "sigma_max": 80.0}
    code = main(["--config", str(REPO / "configs" / "quickstart.yaml"), "model.objective={name: ve, sigma_max: 80}",
                 "model.base_channels=8", "model.attention_resolutions=[]", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "logger.wandb=false",
                 "trainer.accelerator=cpu", "run.num_samples=4", "eval.report=false", f"run.output_dir={tmp_path}",
                 "--run-id", "ve"])
    assert code == 0
    model = load_model(tmp_path / "quickstart" / "ve" / "checkpoints" / "last.ckpt")
    assert model.objective.name == "ve" and model.hparams.objective["sigma_max"] == 80.0
    images = model.sample(3, generator=torch.Generator().manual_seed(0), sampler="dpmpp_2m", steps=4)
    assert images.shape == (3, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    with pytest.raises(ValueError, match="needs a discrete"):
        model.sample(2, sampler="ddpm")
    assert "its likelihood" in model.likelihood_unavailable()
