"""Codebook health and reconstruction of the digits VQ-VAE against a plain autoencoder of the same latent size.

Trains ``configs/vqvae_digits.yaml`` (the quickstart-length run: 60 epochs, the default 32-code
codebook) and a convolutional autoencoder whose latent has the same shape as the VQ-VAE's
pre-quantization latent (16 channels on a 4x4 grid), then reports on the digits test split:
the fraction of codes in use, the code perplexity, dead codes, and the reconstruction MSE of both.

    python -m bench.vq_codebook [--quick]

Target: at least 90% of the codes in use at the end of the run, over ``--seeds`` training seeds
(default 3) by the interval rule of ``bench/stats.py`` (t-interval of the mean).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import torch

from bench.common import REPO, Recorder, base_parser, child_env, python_command, setup
from bench.stats import mean_interval


def train(config: str, out: Path, overrides: list[str]) -> Path:
    command = python_command("-m", "lit_gen.fit", "--config", config, "--run-id", "bench", f"run.output_dir={out}",
                             "logger.wandb=false", "run.num_samples=0", "trainer.accelerator=cpu", *overrides)
    result = subprocess.run(command, cwd=REPO, env=child_env(OMP_NUM_THREADS="1"), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{config} failed:\n{result.stderr[-3000:]}")
    return next(out.glob("*/bench/checkpoints/last.ckpt"))


def last_epoch(checkpoint: Path) -> dict:
    return [json.loads(line) for line in (checkpoint.parent.parent / "metrics.jsonl").read_text().splitlines()][-1]


@torch.no_grad()
def test_mse(model, images: torch.Tensor) -> float:
    model.eval()
    recon = model.decode(model.encode(images))
    return torch.mean(((recon + 1) / 2 - (images + 1) / 2) ** 2).item()


@torch.no_grad()
def code_usage(model, images: torch.Tensor) -> dict[str, float]:
    indices = model.encode_indices(images).flatten()
    counts = torch.bincount(indices, minlength=model.num_codes).float()
    probs = counts / counts.sum()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    return {"codes_used_test": int((counts > 0).sum()), "perplexity_test": entropy.exp().item()}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="VQ-VAE training seeds (default 3; the interval needs 3)")
    args = parser.parse_args()
    setup()
    from lit_gen.checkpoints import load_model
    from lit_gen.data.digits import DigitsDataModule

    rec = Recorder("vq_codebook", "digits VQ-VAE: codes in use, perplexity, reconstruction MSE vs a plain autoencoder")
    epochs = 20 if args.quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        seeds = list(range(args.seeds))
        vq_ckpts = [train("configs/vqvae_digits.yaml", out / f"vq{seed}", [f"trainer.max_epochs={epochs}", f"seed={seed}"])
                    for seed in seeds]
        fractions = [last_epoch(c).get("train/codes_used") for c in vq_ckpts]  # fraction of the codebook used in the epoch
        vq_ckpt = vq_ckpts[0]
        ae_ckpt = train("configs/ae_digits.yaml", out / "ae", [
            f"trainer.max_epochs={epochs}", "model.architecture=conv", "model.conv_channels=[32]",
            "model.latent_dim=16", "model.lr=1.0e-3"])
        vq = load_model(vq_ckpt)
        ae = load_model(ae_ckpt)
        rows = [json.loads(line) for line in (vq_ckpt.parent.parent / "metrics.jsonl").read_text().splitlines()]
    dm = DigitsDataModule()
    test = dm.dataset("test")
    images = torch.stack([test[i][0] for i in range(len(test))])
    last = rows[-1]
    num_codes = vq.num_codes
    fraction = sum(fractions) / len(fractions)
    rec.numbers = {
        "epochs": epochs,
        "seeds": seeds,
        "train_fraction_of_codes_used_last_epoch_per_seed": fractions,
        "num_codes": num_codes,
        "latent_shape": list(vq.encode(images[:1]).shape[1:]),
        "train_fraction_of_codes_used_last_epoch": fraction,  # mean over the seeds
        "train_code_perplexity_last_epoch": last.get("train/code_perplexity"),
        "train_dead_codes_last_epoch": last.get("train/dead_codes"),
        **code_usage(vq, images),
        "vqvae_test_mse": test_mse(vq, images),
        "ae_same_latent_test_mse": test_mse(ae, images),
        "ae_latent_shape": list(ae.encode(images[:1]).shape[1:]),
    }
    rec.headline = {
        "codes in use": (f"{', '.join(str(round(f * num_codes)) for f in fractions)} of {num_codes} (seeds {seeds}; "
                         f"test split, seed 0: {rec.numbers['codes_used_test']})"),
        "perplexity": f"{rec.numbers['train_code_perplexity_last_epoch']:.1f}",
        "test MSE (VQ-VAE / AE)": f"{rec.numbers['vqvae_test_mse']:.4f} / {rec.numbers['ae_same_latent_test_mse']:.4f}",
    }
    rec.target("fraction of codes in use", fraction, ">=", 0.9,
               cause=f"dead codes in the last epoch (seed 0): {rec.numbers['train_dead_codes_last_epoch']}",
               interval=mean_interval(fractions))
    rec.notes.append("MSE on [0, 1] pixels of the 270 digits test images; the AE's continuous latent has the shape of the "
                     "VQ-VAE's pre-quantization latent, so the gap is the price of quantization.")
    rec.report(rec.write(args.out))


if __name__ == "__main__":
    main()
