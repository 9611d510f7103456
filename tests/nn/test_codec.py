"""lit_gen.nn.codec: the one convolutional codec of the AE, VAE, VQ-VAE and VQ-GAN families."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_gen.errors import CheckpointError
from lit_gen.models.ae import Autoencoder
from lit_gen.models.vae import VAE
from lit_gen.models.vqvae import VQVAE
from lit_gen.nn.codec import ConvDecoder, ConvEncoder
from lit_gen.nn.layers import Downsample, ResBlock, Upsample


def widths_of(net: nn.Module) -> list[int]:
    return [m.conv2.out_channels for m in net.modules() if isinstance(m, ResBlock)]


def test_one_level_per_width_each_halving_once():
    encoder = ConvEncoder(3, (8, 16, 32), 5, num_res_blocks=2)
    decoder = ConvDecoder(5, (8, 16, 32), 3, num_res_blocks=2)
    z = encoder(torch.randn(2, 3, 16, 16))
    assert z.shape == (2, 5, 4, 4)
    assert decoder(z).shape == (2, 3, 16, 16)
    assert widths_of(encoder) == [8, 8, 16, 16, 32, 32]
    assert widths_of(decoder) == [32, 32, 16, 16, 8, 8]  # the mirror
    assert sum(isinstance(m, Downsample) for m in encoder.modules()) == 2
    assert sum(isinstance(m, Upsample) for m in decoder.modules()) == 2


def test_every_spatial_family_builds_the_same_codec():
    ae = Autoencoder(channels=1, image_size=8, architecture="conv", conv_channels=(8, 16), latent_dim=4)
    vae = VAE(channels=1, image_size=8, architecture="conv", conv_channels=(8, 16), latent_dim=4)
    vq = VQVAE(channels=1, image_size=8, hidden_channels=16, num_res_blocks=1, num_downsamples=2)
    for model in (ae, vae, vq):
        assert type(model.encoder) is ConvEncoder and type(model.decoder) is ConvDecoder
    # conv_channels name the widths after each halving; the full resolution keeps the first.
    assert widths_of(ae.encoder) == [8, 8, 16] and widths_of(vq.encoder) == [16, 16, 16]
    assert ae.latent_shape == (4, 2, 2) and vae.latent_shape == (4, 2, 2)
    assert vae.encoder(torch.randn(2, 1, 8, 8)).shape == (2, 8, 2, 2)  # mean and log-variance


def test_the_vq_weight_names_are_those_of_its_earlier_codec():
    # VQ checkpoints written before the codecs became one load unchanged: same modules, same order.
    vq = VQVAE(channels=1, image_size=8, hidden_channels=16, num_res_blocks=1, num_downsamples=1)
    names = [k for k in vq.state_dict() if k.startswith(("encoder.", "decoder."))]
    assert names[:3] == ["encoder.layers.0.weight", "encoder.layers.0.bias", "encoder.layers.1.norm1.weight"]
    # stem, block, downsample, block, norm, SiLU, head conv / stem, block, upsample, block, norm, SiLU, last_layer
    for key in ("encoder.layers.2.conv.weight", "encoder.layers.3.conv2.weight", "encoder.layers.4.weight",
                "encoder.layers.6.weight", "decoder.layers.2.conv.weight", "decoder.layers.3.conv2.weight",
                "decoder.layers.4.weight", "decoder.last_layer.weight"):
        assert key in names, key
    assert not any(k.startswith(("encoder.layers.7", "decoder.layers.6")) for k in names)


def test_a_checkpoint_of_the_earlier_stride4_codec_is_refused_with_the_fix():
    ae = Autoencoder(channels=1, image_size=8, architecture="conv", conv_channels=(8,), latent_dim=4)
    old = {"encoder.net.0.weight": torch.zeros(8, 1, 3, 3), "encoder.net.0.bias": torch.zeros(8)}
    with pytest.raises(CheckpointError, match="earlier stride-4x4 layout.*retrain it"):
        ae.load_state_dict(old)
