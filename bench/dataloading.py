"""Can each datamodule feed its training step? Images/s delivered vs images/s a step consumes.

    python -m bench.dataloading
    python -m bench.dataloading --quick

Datasets: scikit-learn's digits (real) and, in their real on-disk formats written with
``tests/fakes.py``, 10,000 MNIST idx images, 10,000 CIFAR-10 pickled images and 2,000 CelebA
178x218 JPEGs (textured so that they decode like photos: about the file size of the real ones).
Each is read by the datamodule its configs build (batch size, ``num_workers``, pin/persistent
settings as the config says). Delivered rate: images of one whole training epoch divided by its
wall time, after one warm-up epoch (a config without persistent workers pays their start-up in
every epoch, and so it does here). Consumed rate: a plain training step of that config's model on
batches from the same loader (forward, backward, AdamW), so the rate is the fastest lit_gen could
ask for (``bench.overhead`` measures lit_gen's own cost per step). The two are measured interleaved;
the target is delivered >= 3x consumed.

The big models take seconds per step on a CPU: their steps are timed at a small batch (images/s of
a CPU barely depend on the batch size), which the record names. With CUDA the step runs on the GPU
at the config's batch.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, Recorder, base_parser, interleave, median, setup, sync

#: (config, dataset) pairs: each dataset with the configs that train on it.
PAIRS = [
    ("vae_digits", "digits"), ("ddpm_digits", "digits"),
    ("vae_mnist", "mnist"), ("ddpm_mnist", "mnist"),
    ("vae_cifar", "cifar10"), ("ddpm_cifar", "cifar10"),
    ("vae_celeba", "celeba"), ("ddpm_celeba", "celeba"),
]
#: Batch size for timing the steps of models too slow on a CPU at their configured batch.
SMALL_BATCH = {"vae_cifar": 32, "vae_celeba": 16, "ddpm_mnist": 8, "ddpm_cifar": 4, "ddpm_celeba": 2}
TARGET = 3.0


# ----------------------------------------------------------------------------------- fake datasets
def write_datasets(root: Path) -> dict:
    """MNIST, CIFAR-10 and CelebA in their real formats under ``root`` (tests/fakes.py writers)."""
    from tests.fakes import write_fake_celeba, write_fake_cifar10, write_fake_mnist

    n_mnist, n_cifar, n_celeba = (10000, 10000, 2000)
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
def build(config: str, root: Path, batch_size: int | None = None, workers: bool = True):
    from lit_gen.config import load_config
    from lit_gen.fit import build as build_objects

    overrides = [f"data.root={root}"] + ([f"data.batch_size={batch_size}"] if batch_size else [])
    if not workers:  # the step is timed on two batches taken once: no need to start worker processes
        overrides += ["data.num_workers=0", "data.persistent_workers=false", "data.pin_memory=false"]
    cfg = load_config(REPO / "configs" / f"{config}.yaml", overrides)
    torch.manual_seed(cfg.seed)
    datamodule, model = build_objects(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return cfg, datamodule, model


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


class StepRate:
    """Images/s of a plain training step (forward, backward, clipping, AdamW) on real batches."""

    def __init__(self, cfg, datamodule, model, seconds: float) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).train()
        self.optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=model.lr)
        self.clip = cfg.trainer.get("gradient_clip_val")
        self.seconds = seconds
        loader = datamodule.train_dataloader()
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == 2:
                break
        del loader  # stops its workers
        self.batches = batches
        self.step(batches[0])  # warm-up (first-call allocations)

    def step(self, batch) -> None:
        images, labels = (t.to(self.device, non_blocking=True) for t in batch)
        images = self.model.augmented((images, labels))[0] if hasattr(self.model, "augmented") else images
        loss = self.model.loss((images, labels)).total
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()

    def measure(self) -> float:
        """Steps for at least ``seconds`` (and at least two), images per second."""
        images, i = 0, 0
        started = time.perf_counter()
        while i < 2 or time.perf_counter() - started < self.seconds:
            batch = self.batches[i % len(self.batches)]
            self.step(batch)
            images += batch[0].shape[0]
            i += 1
        sync(self.device)
        return images / (time.perf_counter() - started)


def measure_pair(config: str, root: Path, repeats: int, quick: bool) -> dict:
    cfg, datamodule, _ = build(config, root)
    data = cfg.data
    small = None if torch.cuda.is_available() else SMALL_BATCH.get(config)  # a GPU takes the config's batch
    _, step_datamodule, model = build(config, root, batch_size=small, workers=False)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    loader, trainer = LoaderRate(datamodule), StepRate(cfg, step_datamodule, model, 1.0 if quick else 3.0)
    rates = interleave({"delivered": loader.epoch, "consumed": trainer.measure}, repeats)
    delivered, consumed = median(rates["delivered"]), median(rates["consumed"])
    return {
        "config": config,
        "dataset": data["name"],
        "train_images": len(datamodule.dataset("train")),
        "image_size": datamodule.image_size,
        "batch_size": data["batch_size"],
        "num_workers": data["num_workers"],
        "persistent_workers": data.get("persistent_workers", False),
        "pin_memory": data.get("pin_memory", False),
        "model_parameters": parameters,
        "step_batch_size": small or data["batch_size"],
        "delivered_images_per_s": round(delivered, 1),
        "consumed_images_per_s": round(consumed, 2),
        "ratio": round(delivered / consumed, 2),
        "delivered_all": [round(r, 1) for r in rates["delivered"]],
        "consumed_all": [round(r, 2) for r in rates["consumed"]],
    }


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=[c for c, _ in PAIRS], choices=[c for c, _ in PAIRS])
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default 3, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training step (default 1)")
    args = parser.parse_args(argv)
    setup()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 3)
    rec = Recorder("dataloading", "images/s each datamodule delivers vs images/s its config's training step consumes")
    rec.notes.append(f"training step: one process, {'CUDA' if torch.cuda.is_available() else f'{torch.get_num_threads()} torch thread(s)'}, plain loop; loaders use the "
                     f"configs' num_workers. On {rec_cores()} cores the workers and the step share the CPU in a real run.")
    with tempfile.TemporaryDirectory(prefix="lit_gen_bench_data_") as tmp:
        root = Path(tmp)
        rec.numbers["datasets"] = write_datasets(root)
        rec.numbers["pairs"] = []
        for config in args.configs:
            result = measure_pair(config, root, repeats, args.quick)
            rec.numbers["pairs"].append(result)
            print(f"{config:<12} delivered {result['delivered_images_per_s']:>9.1f} img/s, consumed "
                  f"{result['consumed_images_per_s']:>9.2f} img/s: {result['ratio']:.1f}x", flush=True)
            note = f" (step at batch {result['step_batch_size']})" if result["step_batch_size"] != result["batch_size"] else ""
            rec.headline[f"{config} ({result['dataset']}, {result['num_workers']} workers)"] = (
                f"{result['ratio']:.1f}x: {result['delivered_images_per_s']:.0f} vs {result['consumed_images_per_s']:.1f} img/s{note}")
            rec.target(f"{config} delivered/consumed", result["ratio"], ">=", TARGET, "x", cause(result))
    path = rec.write(args.out)
    rec.report(path)


def rec_cores() -> int:
    import os

    return os.cpu_count() or 1


def cause(result: dict) -> str:
    if result["num_workers"] == 0:
        return (f"{result['dataset']} is read in the training process (num_workers=0), a batch at a time: "
                f"{1e6 / result['delivered_images_per_s']:.1f} us per image against a plain step of "
                f"{1e6 / result['consumed_images_per_s']:.1f} us per image")
    return (f"{result['num_workers']} workers on a {rec_cores()}-core machine deliver {result['delivered_images_per_s']:.0f} img/s; "
            f"decoding/resizing per image is the limit")


if __name__ == "__main__":
    main()
