"""Artifacts the evaluation tests share, built once per test session whichever test asks first.

- ``digits_classifier(factory)``: a domain classifier trained on the digits by the real CLI
  (``python -m lit_gen.metrics.classifier``, in-process, few steps), and the CLI's exit code.
- ``digits_run(factory)``: a VAE trained for 2 epochs on the digits by ``lit_gen.fit`` (in-process),
  giving a real run folder: config.yaml, checkpoints/last.ckpt, metrics.csv, summary.json, samples/.

Inception weights cannot be downloaded here, so the tests measure FID with the classifier's features.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_built: dict[str, object] = {}


def _base(factory) -> Path:
    if "base" not in _built:
        _built["base"] = factory.mktemp("eval_shared")
    return _built["base"]


def digits_classifier(factory) -> tuple[Path, int]:
    """(path of a trained digits classifier, exit code of the classifier CLI)."""
    if "classifier" not in _built:
        from lit_gen.metrics import classifier

        path = _base(factory) / "digits_classifier.pt"
        code = classifier.main(["--data", "digits", "--out", str(path), "--steps", "150", "--batch-size", "64",
                                "--device", "cpu"])
        _built["classifier"] = (path, code)
    return _built["classifier"]


def digits_run(factory) -> Path:
    """The run folder of a 2-epoch VAE on the digits, written by lit_gen.fit."""
    if "run" not in _built:
        from lit_gen import fit

        output = _base(factory) / "runs"
        code = fit.main(["--config", str(REPO / "configs" / "vae_digits.yaml"), "--run-id", "t", "trainer.max_epochs=2",
                         "trainer.accelerator=cpu", "logger.wandb=false", f"run.output_dir={output}",
                         "logger.log_every_n_steps=5"])
        assert code == 0
        _built["run"] = output / "vae_digits" / "t"
    return _built["run"]

