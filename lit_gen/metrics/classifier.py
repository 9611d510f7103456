"""A small CNN classifier whose penultimate layer serves as an offline FID feature extractor.

    python -m lit_gen.metrics.classifier --data digits --out weights/digits_classifier.pt
    python -m lit_gen.metrics.classifier --data mnist --out weights/mnist_classifier.pt --data-root data

Inception weights cannot always be downloaded; a classifier trained on the dataset itself gives
features that know what a digit looks like, so a Fréchet distance on them still ranks models.
Its values are labelled ``FID-<dataset>-classifier`` and must never be compared with Inception FID.

The network and its file format are ``lit_gen.nn.classifier``; this tool trains one. The file
holds the weights, the architecture, the dataset, the test accuracy and a sanity check (FID(train,
test) must be far below FID(uniform noise, test)); the CLI prints both and exits 1 when the check
fails. Use it as ``--feature classifier:weights/digits_classifier.pt`` or
``eval.feature: classifier:weights/digits_classifier.pt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch
import torch.nn.functional as F
from torch import Tensor

import lit_gen
from lit_gen import registry
from lit_gen.cli import run_main, setup_logging
from lit_gen.errors import ConfigError
from lit_gen.metrics.features import ClassifierFeatures
from lit_gen.metrics.fid import FeatureMoments, frechet_distance_of
from lit_gen.metrics.reference import dataset_statistics
from lit_gen.metrics.sampling import pick_device
from lit_gen.nn.classifier import DomainClassifier, save_classifier

log = logging.getLogger(__name__)
#: FID(train, test) must be below this share of FID(noise, test) for the sanity check to pass.
SANITY_RATIO = 0.1


# ----------------------------------------------------------------------------------- training
def train_classifier(datamodule, *, steps: int = 1500, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                     feature_dim: int = 64, device: torch.device | str = "cpu") -> DomainClassifier:
    """Train a ``DomainClassifier`` on the datamodule's train split (AdamW, cosine decay, seeded)."""
    train = datamodule.dataset("train")
    images, labels = _stack(train)
    num_classes = getattr(datamodule, "num_classes", None) or int(labels.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the layers' initial weights come from the global RNG
    net = DomainClassifier(images.shape[1], images.shape[-1], num_classes, feature_dim=feature_dim).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    net.train()
    for step in range(steps):
        index = torch.randint(len(labels), (min(batch_size, len(labels)),), generator=generator)
        x, y = images[index].to(device), labels[index].to(device)
        # Small random shifts make the features robust to the slight blur/offsets of generated digits.
        shift = torch.randint(-1, 2, (2,), generator=generator).tolist()
        x = torch.roll(x, shifts=shift, dims=(-2, -1))
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % max(1, steps // 5) == 0:
            log.info("step %d/%d  loss %.4f", step, steps, loss.item())
    return net.eval()


@torch.no_grad()
def accuracy(net: DomainClassifier, dataset, device: torch.device | str = "cpu", batch_size: int = 512) -> float:
    """Share of ``dataset`` items whose predicted class is their label."""
    images, labels = _stack(dataset)
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        correct += int((net(x.to(device)).argmax(1).cpu() == y).sum())
    return correct / max(1, len(labels))


@torch.no_grad()
def sanity_check(net: DomainClassifier, datamodule, dataset_name: str, *, seed: int = 0,
                 device: torch.device | str = "cpu") -> dict:
    """FID(train, test) and FID(uniform noise, test) on the classifier's features; passes when the first is far lower."""
    extractor = ClassifierFeatures(net, dataset_name).to(device)
    test = dataset_statistics(datamodule.dataset("test"), extractor, device=device).stats
    train = dataset_statistics(datamodule.dataset("train"), extractor, device=device).stats
    first, _ = datamodule.dataset("test")[0]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((test.count, *first.shape), generator=generator)
    moments = FeatureMoments(extractor.num_features)
    moments.update(extractor.extract(noise.to(device)).features)
    fid_train = frechet_distance_of(train, test)
    fid_noise = frechet_distance_of(moments.stats(), test)
    return {"fid_train_test": fid_train, "fid_noise_test": fid_noise, "train_count": train.count,
            "test_count": test.count, "ratio": fid_train / fid_noise if fid_noise > 0 else float("inf"),
            "passed": bool(fid_train < SANITY_RATIO * fid_noise), "required_ratio": SANITY_RATIO}


def _stack(dataset) -> tuple[Tensor, Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([img for img, _ in items]), torch.as_tensor([int(lbl) for _, lbl in items], dtype=torch.int64)


# ----------------------------------------------------------------------------------- CLI
def build_command(args: argparse.Namespace) -> str:
    """The full command line that trains this classifier again, every option spelled out (seed included)."""
    parts = ["python -m lit_gen.metrics.classifier", f"--data {args.data}", f"--out {args.out}"]
    if args.data_root is not None:
        parts.append(f"--data-root {args.data_root}")
    if args.image_size is not None:
        parts.append(f"--image-size {args.image_size}")
    parts += [f"--steps {args.steps}", f"--batch-size {args.batch_size}", f"--lr {args.lr:g}",
              f"--feature-dim {args.feature_dim}", f"--seed {args.seed}"]
    return " ".join(parts)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lit_gen.metrics.classifier",
                                     description="Train a domain classifier for offline FID features.")
    parser.add_argument("--data", required=True, help="dataset registry name (digits, mnist, cifar10, ...)")
    parser.add_argument("--out", required=True, help="output file, e.g. weights/digits_classifier.pt")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: the datamodule's default)")
    parser.add_argument("--image-size", type=int, default=None, help="train at this side length (default: native)")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--feature-dim", type=int, default=64, help="width of the feature layer (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {args.steps}")
    device = pick_device(args.device)
    data_cls = registry.resolve("data", args.data)
    kwargs = {"image_size": args.image_size}
    if args.data_root is not None:
        kwargs["root"] = args.data_root
    datamodule = data_cls(**kwargs)
    datamodule.prepare_data()
    if getattr(datamodule, "num_classes", None) is None:
        raise ConfigError(f"--data {args.data}: this dataset has no class labels, so no classifier can be trained on it")
    started = time.time()
    net = train_classifier(datamodule, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           feature_dim=args.feature_dim, device=device)
    meta = {
        "dataset": args.data,
        # Rebuilding the file: this command with this seed (records quote it beside the file's hash).
        "command": build_command(args),
        "image_size": net.image_size,
        "train_steps": args.steps,
        "seed": args.seed,
        "test_accuracy": accuracy(net, datamodule.dataset("test"), device),
        "sanity": sanity_check(net, datamodule, args.data, seed=args.seed, device=device),
        "lit_gen_version": lit_gen.__version__,
        "seconds": round(time.time() - started, 1),
    }
    save_classifier(args.out, net.cpu(), meta)
    print(json.dumps(meta, indent=2))
    sanity = meta["sanity"]
    print(f"wrote {args.out}: test accuracy {meta['test_accuracy']:.3f}; FID-{args.data}-classifier "
          f"train-vs-test {sanity['fid_train_test']:.3f}, noise-vs-test {sanity['fid_noise_test']:.3f}")
    if not sanity["passed"]:
        log.warning("sanity check failed: FID(train, test) is not below %.0f%% of FID(noise, test); train longer "
                    "(--steps) before trusting these features", 100 * SANITY_RATIO)
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
