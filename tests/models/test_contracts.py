"""lit_gen.models.contracts: every registered family offers what callbacks may use, and nothing
in the callbacks reaches past it."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_gen import registry
from lit_gen.build import build_model
from lit_gen.models.contracts import CallbackContract
from tests.models.test_diffusion import TINY
from tests.models.test_vqgan import tiny_vqgan


def tiny_families(tmp_path) -> dict:
    from lit_gen.models.ae import Autoencoder, DenoisingAutoencoder
    from lit_gen.models.diffusion import Diffusion
    from lit_gen.models.vae import VAE
    from lit_gen.models.vqvae import VQVAE

    def vqvae():
        return VQVAE(channels=1, image_size=8, hidden_channels=8, num_res_blocks=1, num_downsamples=1,
                     quantizer={"name": "vq", "num_codes": 8, "code_dim": 4})

    first_stage = vqvae()
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(first_stage, DataLoader(TensorDataset(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)), batch_size=4))
    trainer.save_checkpoint(tmp_path / "vqvae.ckpt")
    return {
        "ae": Autoencoder(image_size=8, hidden_dims=(8,), latent_dim=2),
        "dae": DenoisingAutoencoder(image_size=8, hidden_dims=(8,), latent_dim=2),
        "vae": VAE(image_size=8, hidden_dims=(8,), latent_dim=2),
        "vqvae": vqvae(),
        "vqgan": tiny_vqgan(),
        "prior": build_model("prior", dict(first_stage=str(tmp_path / "vqvae.ckpt"), n_layer=1, n_head=1, n_embd=8)),
        "diffusion": Diffusion(**TINY),
    }


def test_every_registered_family_satisfies_the_callback_contract(tmp_path):
    families = tiny_families(tmp_path)
    assert set(families) == set(registry.MODELS)  # a new family joins this test with its registry line
    for name, model in families.items():
        assert isinstance(model, CallbackContract), name
        assert type(model) is registry.resolve("model", name), name
        # Usable before any training step: error messages and sampling callbacks read them.
        assert model.last_loss_terms == {} and model.skipped_optimizer_steps() == (), name
        assert isinstance(model.conditional, bool) and (model.num_classes is None or model.conditional), name


def test_callbacks_reach_the_model_only_through_the_contract():
    # No more attributes looked up on the side: a callback that needs something of the model adds it to the Protocol.
    folder = Path(__file__).resolve().parents[2] / "lit_gen" / "callbacks"
    for path in folder.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"getattr\(\s*pl_module", text), path.name
        assert not re.search(r"pl_module\.\w+\s*=[^=]", text), path.name  # nothing set on the module either


def test_each_family_offers_the_capabilities_the_tools_ask_for(tmp_path):
    from lit_gen.models.capabilities import Autoencoding, CodeAutoencoding, Likelihood, SamplingDefaults

    families = tiny_families(tmp_path)
    offers = {name: {protocol.__name__ for protocol in (Autoencoding, CodeAutoencoding, Likelihood, SamplingDefaults)
                     if isinstance(model, protocol)} for name, model in families.items()}
    assert offers == {
        "ae": {"Autoencoding"}, "dae": {"Autoencoding"}, "vae": {"Autoencoding", "Likelihood"},
        "vqvae": {"Autoencoding", "CodeAutoencoding"}, "vqgan": {"Autoencoding", "CodeAutoencoding"},
        "prior": {"Likelihood"}, "diffusion": {"Likelihood", "SamplingDefaults"},
    }


def test_no_tool_names_a_family():
    # Tools ask the model what it can do (lit_gen.models.capabilities); a family's registry name never decides.
    root = Path(__file__).resolve().parents[2] / "lit_gen"
    tools = [*(root / "commands").glob("*.py"), *(root / "comparing").glob("*.py"), *(root / "metrics").glob("*.py"),
             *(root / "callbacks").glob("*.py")]
    assert len(tools) > 20
    for path in tools:
        text = path.read_text()
        for family in [*registry.MODELS, *registry.ALIASES["model"]]:
            assert not re.search(rf"""["']{family}["']""", text), (path.name, family)
