"""docs/adding-a-sampler.md works as written: its function, table line and test, and nothing else touched."""

from __future__ import annotations

import re

import pytest
import torch

from lit_gen.diffusion import samplers
from tests.conftest import REPO

PAGE = REPO / "docs" / "adding-a-sampler.md"


def block(after_heading: str) -> str:
    """The first python block after the heading that starts with ``after_heading``."""
    text = PAGE.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after_heading):], re.S).group(1)


@pytest.fixture
def with_the_page_sampler(monkeypatch):
    """The page's function and table line, run inside lit_gen.diffusion.samplers as the page says to write them."""
    namespace = dict(vars(samplers))
    exec(block("## 1. The function"), namespace)
    table = dict(samplers.SAMPLERS)
    monkeypatch.setattr(samplers, "SAMPLERS", table)
    namespace["SAMPLERS"] = table
    exec(block("## 2. The table line"), namespace)
    return table


def test_the_page_adds_one_sampler_that_every_tool_then_offers(with_the_page_sampler, tmp_path):
    assert "euler_ancestral" in with_the_page_sampler and with_the_page_sampler["euler_ancestral"].evaluations(7) == 7
    # The page's own test, with what it imports.
    from lit_gen.diffusion.objectives import EDMObjective
    from lit_gen.diffusion.samplers import sample
    from tests.diffusion.test_samplers import MU, STD, exact_edm

    namespace = {"sample": sample, "EDMObjective": EDMObjective, "exact_edm": exact_edm, "MU": MU, "STD": STD,
                 "torch": torch}
    exec(block("## 3. The test"), namespace)
    namespace["test_euler_ancestral_draws_gaussian_data_at_first_order"]()

    # A model samples with it; it is stochastic (the generator's noise reaches it) and in range.
    from lit_gen.models.diffusion import Diffusion
    from lit_gen.metrics.sampling import add_sampler_arguments

    model = Diffusion(channels=1, image_size=8, base_channels=8, channel_mults=(1,), attention_resolutions=(),
                      norm_groups=4, objective="flow", ema={"name": "exponential", "decay": 0})
    a = model.sample(2, sampler="euler_ancestral", steps=4, generator=torch.Generator().manual_seed(0))
    b = model.sample(2, sampler="euler_ancestral", steps=4, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 1, 8, 8) and not torch.allclose(a, b) and 0 <= a.min() and a.max() <= 1
    # The CLI offers it, with the table's help; the checks know it too.
    import argparse

    parser = argparse.ArgumentParser()
    add_sampler_arguments(parser)
    assert "k-diffusion's euler_ancestral" in parser.format_help()
    assert samplers.check_sampler("euler_ancestral", discrete=False) == "euler_ancestral"


def test_without_the_page_the_sampler_does_not_exist():
    # The table is the only list: the sampler above came from the page alone.
    with pytest.raises(ValueError, match="unknown sampler 'euler_ancestral'; choose one of ddpm, ddim"):
        samplers.check_sampler("euler_ancestral", discrete=True)
