"""Can each datamodule feed the GPU step its config is meant for? Images/s delivered vs images/s a GPU would consume.

    python -m bench.dataloading
    python -m bench.dataloading --quick                       # smaller fake datasets
    python -m bench.dataloading --assumed-tflops 100 --min-step-ms 5

Datasets: scikit-learn's digits (real) and, in their real on-disk formats written with
``tests/fakes.py``, 10,000 MNIST idx images, 10,000 CIFAR-10 pickled images and 2,000 CelebA
178x218 JPEGs (textured so that they decode like photos: about the file size of the real ones).
Each is read by the datamodule its configs build (batch size, pin/persistent settings as the
config says), with ``num_workers`` capped at this machine's cores (the record gives both).
Delivered rate: images of one whole training epoch divided by its wall time, after one warm-up
epoch (a config without persistent workers pays their start-up in every epoch, and so it does here),
over at least 10 epochs.

Consumed rate: what the config's training step would ask for on the GPU it is meant for, an
assumption stated in the record, not a measurement: the training FLOPs per image of the config's
model (forward + backward, counted with ``torch.utils.flop_counter.FlopCounterMode`` on this
machine) at an assumed achieved throughput (``--assumed-tflops``, default 200 TFLOP/s: about a
fifth of an H100's dense bf16 peak), and no faster than one step per ``--min-step-ms`` (default
3 ms: kernel launches and the optimizer of a small model). Target: delivered >= 1x consumed, by the
interval rule over the epochs (``bench.stats.paired_median_ratio``: median of per-epoch ratios,
95% bootstrap interval).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, Recorder, base_parser, median, setup
from bench.stats import MIN_PAIRS, paired_median_ratio

#: (config, dataset) pairs: each dataset with the configs that train on it.
PAIRS = [
    ("vae_digits", "digits"), ("ddpm_digits", "digits"),
    ("vae_mnist", "mnist"), ("ddpm_mnist", "mnist"),
    ("vae_cifar", "cifar10"), ("ddpm_cifar", "cifar10"),
    ("vae_celeba", "celeba"), ("ddpm_celeba", "celeba"),
]
TARGET = 1.0
ASSUMED_TFLOPS = 200.0
MIN_STEP_MS = 3.0


# ----------------------------------------------------------------------------------- fake datasets
def write_datasets(root: Path, quick: bool = False) -> dict:
    """MNIST, CIFAR-10 and CelebA in their real formats under ``root`` (tests/fakes.py writers)."""
    from tests.fakes import write_fake_celeba, write_fake_cifar10, write_fake_mnist

    n_mnist, n_cifar, n_celeba = (2000, 2000, 400) if quick else (10000, 10000, 2000)
    started = time.perf_counter()
    write_fake_mnist(root, n_train=n_mnist, n_test=1000)
    write_fake_cifar10(root, per_batch=n_cifar // 5, n_test=1000)
    names = write_fake_celeba(root, splits=(n_celeba, 50, 50))
    sizes = texture_jpegs(root / "celeba" / "img_align_celeba", [n for split in names.values() for n in split])
    return {"mnist_train": n_mnist, "cifar10_train": n_cifar, "celeba_train": n_celeba,
            "celeba_mean_jpeg_kib": round(float(np.mean(sizes)) / 1024, 1), "seconds_to_write": round(time.perf_counter() - started, 1)}


def texture_jpegs(folder: Path, names: list[str], seed: int = 0) -> list[int]:
    """Rewrite the fake faces as smooth random textures: flat colours decode faster than photos do.

    Real aligned CelebA JPEGs average about 8-12 KiB at 178x218; these land in that range.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = []
    for name in names:
        coarse = rng.integers(0, 256, size=(14, 12, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((178, 218), Image.BICUBIC)
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, size=(218, 178, 3)).astype(np.int16)
        path = folder / name
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=90)
        sizes.append(path.stat().st_size)
    return sizes


# ----------------------------------------------------------------------------------- the two rates
def build(config: str, root: Path):
    """The config's datamodule (workers capped at the cores) and model, and the worker count it asked for."""
    from lit_gen.config import load_config
    from lit_gen.fit import build as build_objects

    asked = load_config(REPO / "configs" / f"{config}.yaml", [f"data.root={root}"]).data["num_workers"]
    overrides = [f"data.root={root}", f"data.num_workers={min(asked, rec_cores())}"]
    cfg = load_config(REPO / "configs" / f"{config}.yaml", overrides)
    torch.manual_seed(cfg.seed)
    datamodule, model = build_objects(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return cfg, datamodule, model, asked


class LoaderRate:
    """Images/s over one epoch of a datamodule's train loader (the loader is kept, as Lightning keeps it)."""

    def __init__(self, datamodule) -> None:
        self.loader = datamodule.train_dataloader()
        self.epoch()  # warm-up: page cache, and the start-up of persistent workers

    def epoch(self) -> float:
        images = 0
        started = time.perf_counter()
        for batch in self.loader:
            images += batch[0].shape[0]
        return images / (time.perf_counter() - started)


def training_flops_per_image(model, datamodule) -> int:
    """Forward + backward FLOPs of the model's training loss per image, on one real image (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    images, labels = datamodule.dataset("train").__getitem__(0)
    batch = (images[None], torch.as_tensor(labels)[None])
    model.train()
    with FlopCounterMode(display=False) as counter:
        model.loss(batch).total.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def assumed_gpu_rate(flops_per_image: int, batch_size: int, tflops: float, min_step_ms: float) -> float:
    """Images/s of a step at ``tflops`` achieved, and no more than one step per ``min_step_ms``."""
    by_flops = tflops * 1e12 / max(1, flops_per_image)
    by_launch = batch_size / (min_step_ms / 1e3)
    return min(by_flops, by_launch)


def measure_pair(config: str, root: Path, epochs: int, tflops: float, min_step_ms: float) -> dict:
    cfg, datamodule, model, asked = build(config, root)
    data = cfg.data
    flops = training_flops_per_image(model, datamodule)
    consumed = assumed_gpu_rate(flops, data["batch_size"], tflops, min_step_ms)
    loader = LoaderRate(datamodule)
    delivered_all = [loader.epoch() for _ in range(epochs)]
    delivered = median(delivered_all)
    interval = paired_median_ratio(delivered_all, [consumed] * len(delivered_all))
    return {
        "config": config,
        "dataset": data["name"],
        "train_images": len(datamodule.dataset("train")),
        "image_size": datamodule.image_size,
        "batch_size": data["batch_size"],
        "num_workers_config": asked,
        "num_workers": data["num_workers"],
        "persistent_workers": data.get("persistent_workers", False),
        "pin_memory": data.get("pin_memory", False),
        "trained_parameters": sum(p.numel() for p in model.trainable_parameters()),
        "training_flops_per_image": flops,
        "assumed_consumed_images_per_s": round(consumed, 1),
        "consumed_bound_by": "flops" if consumed < data["batch_size"] / (min_step_ms / 1e3) else "min step time",
        "delivered_images_per_s": round(delivered, 1),
        "ratio": round(delivered / consumed, 3),
        "interval": interval.as_dict(),
        "delivered_all": [round(r, 1) for r in delivered_all],
    }


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=[c for c, _ in PAIRS], choices=[c for c, _ in PAIRS])
    parser.add_argument("--epochs", type=int, default=MIN_PAIRS, help=f"timed epochs per loader (default {MIN_PAIRS})")
    parser.add_argument("--assumed-tflops", type=float, default=ASSUMED_TFLOPS,
                        help=f"achieved training TFLOP/s of the GPU a config is meant for (default {ASSUMED_TFLOPS:g})")
    parser.add_argument("--min-step-ms", type=float, default=MIN_STEP_MS,
                        help=f"shortest GPU training step assumed, in ms (default {MIN_STEP_MS:g})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (default 1)")
    args = parser.parse_args(argv)
    setup()
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = Recorder("dataloading", "images/s each datamodule delivers vs images/s its config's step would consume on a GPU")
    rec.numbers["assumption"] = {"achieved_tflops": args.assumed_tflops, "min_step_ms": args.min_step_ms,
                                 "meaning": "consumed images/s = min(achieved FLOP/s / training FLOPs per image, "
                                            "batch / min step time); an assumption, not a measurement"}
    rec.notes.append(f"loaders use the configs' num_workers capped at this machine's {rec_cores()} cores; the consumed rate "
                     f"assumes {args.assumed_tflops:g} TFLOP/s achieved and steps of at least {args.min_step_ms:g} ms.")
    with tempfile.TemporaryDirectory(prefix="lit_gen_bench_data_") as tmp:
        root = Path(tmp)
        rec.numbers["datasets"] = write_datasets(root, args.quick)
        rec.numbers["pairs"] = []
        for config in args.configs:
            result = measure_pair(config, root, args.epochs, args.assumed_tflops, args.min_step_ms)
            rec.numbers["pairs"].append(result)
            print(f"{config:<12} delivered {result['delivered_images_per_s']:>9.1f} img/s, assumed GPU step "
                  f"{result['assumed_consumed_images_per_s']:>9.1f} img/s: {result['ratio']:.2f}x", flush=True)
            capped = (f", {result['num_workers_config']} asked" if result["num_workers"] != result["num_workers_config"] else "")
            rec.headline[f"{config} ({result['dataset']}, {result['num_workers']} workers{capped})"] = (
                f"{result['ratio']:.2f}x: {result['delivered_images_per_s']:.0f} img/s delivered vs "
                f"{result['assumed_consumed_images_per_s']:.0f} assumed for the GPU step "
                f"({result['training_flops_per_image'] / 1e9:.3g} GFLOPs per image)")
            rec.target(f"{config} delivered/assumed GPU step", result["ratio"], ">=", TARGET, "x", cause(result),
                       interval=paired_median_ratio([float(r) for r in result["delivered_all"]],
                                                    [result["assumed_consumed_images_per_s"]] * len(result["delivered_all"])))
    path = rec.write(args.out)
    rec.report(path)


def rec_cores() -> int:
    import os

    return os.cpu_count() or 1


def cause(result: dict) -> str:
    """The measured numbers behind a shortfall (no explanation the run did not measure)."""
    return (f"{result['num_workers']} loader workers on this {rec_cores()}-core machine delivered "
            f"{1e6 / result['delivered_images_per_s']:.1f} us per image; the assumed GPU step takes "
            f"{1e6 / result['assumed_consumed_images_per_s']:.1f} us per image")


if __name__ == "__main__":
    main()
