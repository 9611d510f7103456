"""Checkpoints written by an earlier lit_gen rebuild the network they trained and draw the same samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_gen.checkpoints import load_model
from tests.conditioning import blind_blocks

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints_c20730f"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.ckpt"))


def _options(key: str) -> dict:
    out = {}
    for part in key.split(","):
        name, value = part.split("=")
        out[name] = {"True": True, "False": False}.get(value, value)
        if isinstance(out[name], str):
            out[name] = float(value) if "." in value else int(value) if value.isdigit() else value
    return out


def test_the_fixtures_are_there():
    assert NAMES == ["ddpm_cond", "ddpm_edm", "ddpm_eps", "ddpm_flow", "ddpm_v"]


@pytest.mark.blind_conditioning
@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_from_before_scale_shift_loads_as_added_conditioning_and_samples_as_it_did(name):
    model = load_model(FIXTURES / f"{name}.ckpt")
    assert model.hparams.conditioning == "add"
    # Its 8-channel blocks had one channel per group: blind then, and rebuilt exactly so, not "repaired".
    assert blind_blocks(model)
    expected = torch.load(FIXTURES / f"{name}.samples.pt", weights_only=True)
    for key, images in expected.items():
        got = model.sample(3, generator=torch.Generator().manual_seed(5), **_options(key))
        # The same network and sampler: equal up to float32 kernel rounding of another CPU (a wrong
        # network or conditioning moves samples by whole grey levels).
        assert torch.allclose(got, images, rtol=0, atol=1e-4), (key, float((got - images).abs().max()))


VQ_FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints_vq_flat"


@pytest.mark.parametrize("family", ["vqvae", "vqgan"])
def test_a_vq_checkpoint_from_before_the_quantizer_section_loads_and_codes_as_it_did(family):
    # Written by the code of c20730f..main before model.quantizer: flat num_codes, code_dim, codebook_ema_decay...
    model = load_model(VQ_FIXTURES / f"{family}.ckpt").eval()
    section = model.hparams["quantizer"]
    assert section["name"] == "vq" and (section["num_codes"], section["code_dim"]) == (16, 4)
    assert (section["codebook_ema_decay"], section["dead_code_steps"], section["restart_dead_codes"]) == (0.9, 5, True)
    assert "num_codes" not in model.hparams
    expected = torch.load(VQ_FIXTURES / f"{family}.expected.pt", weights_only=True)
    with torch.no_grad():
        assert torch.equal(model.encode_indices(expected["images"]), expected["indices"])
        recon = model.decode(model.encode(expected["images"]))
        decoded = model.decode_indices(torch.arange(16).view(1, 4, 4))
    # Equal up to another CPU's float32 kernel rounding; a wrong codebook or layer moves them by far more.
    assert torch.allclose(recon, expected["recon"], rtol=0, atol=1e-5)
    assert torch.allclose(decoded, expected["decoded"], rtol=0, atol=1e-5)
