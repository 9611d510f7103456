"""The rotation trick: the forward value is the code; the encoder's gradient is lambda R^T g for the
rotation R of z's direction onto e's, worked out with explicit matrices."""

import torch

from lit_gen.nn.quantizers import VectorQuantizer
from lit_gen.nn.quantizers.vq import rotate_onto


def explicit_rotation(z: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, float]:
    u, q = z / z.norm(), e / e.norm()
    r = (u + q) / (u + q).norm()
    eye = torch.eye(z.numel(), dtype=z.dtype)
    rotation = eye - 2 * torch.outer(r, r) + 2 * torch.outer(q, u)
    return rotation, (e.norm() / z.norm()).item()


def test_the_rotation_maps_z_onto_e_and_is_orthogonal():
    gen = torch.Generator().manual_seed(0)
    z, e = torch.randn(5, dtype=torch.float64, generator=gen), torch.randn(5, dtype=torch.float64, generator=gen)
    rotation, scale = explicit_rotation(z, e)
    assert torch.allclose(rotation @ rotation.t(), torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(scale * rotation @ z, e, atol=1e-12)
    assert torch.allclose(rotate_onto(z[None], e[None])[0], e, atol=1e-12)


def test_the_gradient_is_the_transposed_rotation_of_the_upstream_gradient():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, 3, dtype=torch.float64, generator=gen).requires_grad_(True)
    e = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    g = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    (rotate_onto(z, e) * g).sum().backward()
    for i in range(4):
        rotation, scale = explicit_rotation(z[i].detach(), e[i])
        assert torch.allclose(z.grad[i], scale * rotation.t() @ g[i], atol=1e-12)
        # Not the straight-through copy: the rotation changes the update.
        assert not torch.allclose(z.grad[i], g[i], atol=1e-3)


def test_the_quantizer_with_the_trick_outputs_its_codes_and_rotates_the_gradient():
    torch.manual_seed(0)
    plain = VectorQuantizer(8, 3)
    rotated = VectorQuantizer(8, 3, rotation_trick=True)
    rotated.load_state_dict(plain.state_dict())
    z = torch.randn(2, 3, 2, 2, dtype=torch.float32)
    g = torch.randn(2, 3, 2, 2)
    grads = []
    for vq in (plain, rotated):
        z_e = z.clone().requires_grad_(True)
        q = vq(z_e)
        assert torch.allclose(q.z_q, vq.codes_to_latent(q.indices), atol=1e-5)
        (q.z_q * g).sum().backward()
        grads.append(z_e.grad)
    assert torch.equal(grads[0], g)  # straight-through
    rows_z = z.permute(0, 2, 3, 1).reshape(-1, 3).double()
    rows_g = g.permute(0, 2, 3, 1).reshape(-1, 3).double()
    codes = rotated.codes_to_latent(rotated.indices_of(z)).permute(0, 2, 3, 1).reshape(-1, 3).double()
    got = grads[1].permute(0, 2, 3, 1).reshape(-1, 3).double()
    for i in range(rows_z.shape[0]):
        rotation, scale = explicit_rotation(rows_z[i], codes[i])
        assert torch.allclose(got[i], scale * rotation.t() @ rows_g[i], atol=1e-4)
