"""lit_gen.callbacks.measure_fid: FID during training never changes training, logs its value with the protocol."""

from __future__ import annotations

import json
import re
import textwrap

import lightning as L
import pytest
import torch

from lit_gen.callbacks.measure_fid import FIDCallback
from lit_gen.callbacks.metrics_file import MetricsFile
from lit_gen.callbacks.step_seed import StepSeed
from lit_gen.config import EvalSettings, load_config
from lit_gen.data.digits import DigitsDataModule
from lit_gen.errors import ConfigError, EvaluationError
from lit_gen.evaluate import evaluate_model
from lit_gen.metrics.protocol import PROTOCOL_FIELDS
from lit_gen.metrics.sampling import share_of
from lit_gen.models.vae import VAE
from tests.eval_helpers import digits_classifier


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return digits_classifier(tmp_path_factory)[0]


class GlobalNoise(L.Callback):
    """A careless callback: draws from the global RNG at each epoch end (what FIDCallback must not do)."""

    def on_train_epoch_end(self, trainer, pl_module):
        torch.randn(10)


def train(callbacks: list, step_seed: bool) -> tuple[dict, L.Trainer]:
    L.seed_everything(0, verbose=False)
    datamodule = DigitsDataModule(batch_size=32)
    model = VAE(channels=1, image_size=8, hidden_dims=(16,), latent_dim=4, lr=2e-3)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, limit_train_batches=4, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=([StepSeed(0)] if step_seed else []) + callbacks)
    trainer.fit(model, datamodule=datamodule)
    return {k: v.clone() for k, v in model.state_dict().items()}, trainer


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("step_seed", [True, False], ids=["step-seed", "no-step-seed"])
def test_fid_callback_leaves_the_training_trajectory_bitwise_unchanged(classifier, tmp_path, step_seed):
    baseline, _ = train([], step_seed)
    fid = FIDCallback(EvalSettings(fid_every_n_epochs=1, num_samples=60, feature=f"classifier:{classifier}", batch_size=25,
                                   cache_dir=str(tmp_path / "cache")), record_path=tmp_path / "fid.jsonl", seed=3)
    with_fid, trainer = train([fid], step_seed)
    assert same_weights(baseline, with_fid)
    assert "val/fid_digits_classifier" in trainer.callback_metrics  # never under Inception's val/fid key
    if not step_seed:
        # The check is sensitive: a callback that touches the global RNG does change these weights.
        careless, _ = train([GlobalNoise()], step_seed)
        assert not same_weights(baseline, careless)


def test_each_measurement_is_recorded_with_its_full_protocol(classifier, tmp_path):
    fid = FIDCallback(EvalSettings(fid_every_n_epochs=1, num_samples=60, feature=f"classifier:{classifier}", batch_size=25,
                                   cache_dir=str(tmp_path / "cache")), record_path=tmp_path / "fid.jsonl", seed=3)
    # In lit_gen.fit's order: FID before MetricsFile, so each epoch's row carries that epoch's FID.
    _, trainer = train([fid, MetricsFile(tmp_path / "metrics.jsonl")], step_seed=True)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("val/fid_digits_classifier" in row for row in rows) and len(rows) == 2
    records = [json.loads(line) for line in (tmp_path / "fid.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    for record in records:
        assert set(record) == set(PROTOCOL_FIELDS)
        assert record["metric"] == "FID-digits-classifier" and record["generated_count"] == 60
        assert record["real_dataset"] == "digits" and record["real_split"] == "test" and record["real_count"] == 270
        assert record["seed"] == 3 and record["weights"] == "raw" and record["feature_weights_sha256"]
        # The same provenance as a record from lit_gen.evaluate: the classifier's accuracy and build command.
        assert 0.5 < record["feature_test_accuracy"] <= 1.0 and "lit_gen.metrics.classifier" in record["feature_build_command"]
        assert record["train_images"] == {"dataset": "digits", "split": "train", "count": 1374}
    # The reference statistics are computed once per fit (kept in memory after the first epoch) and cached.
    assert [r["real_stats_reused"] for r in records] == [False, False]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert [row["val/fid_digits_classifier"] for row in rows] == pytest.approx([r["value"] for r in records])

    # The logged value is reproducible: evaluate_model (the evaluate CLI) on the final weights gives it again.
    model = trainer.lightning_module
    again = evaluate_model(model, trainer.datamodule, "digits", fid._extractor, num_samples=60, batch_size=25, seed=3,
                           cache_dir=tmp_path / "cache", kid=False, inception_score=False)
    assert again.real_stats_reused and again.value == pytest.approx(records[-1]["value"], rel=1e-9)


def test_sampler_options_a_family_does_not_take_fail_before_training(classifier, tmp_path):
    fid = FIDCallback(EvalSettings(fid_every_n_epochs=1, num_samples=10, feature=f"classifier:{classifier}",
                                   sample_options={"steps": 10}, cache_dir=str(tmp_path)))
    with pytest.raises(EvaluationError, match="VAE.sample\\(\\) does not take steps"):
        train([fid], step_seed=True)


def test_samples_are_shared_across_ranks_without_loss():
    for total, world in ((10, 3), (7, 2), (5, 8)):
        shares = [share_of(total, rank, world) for rank in range(world)]
        assert sum(shares) == total and max(shares) - min(shares) <= 1


def test_eval_config_section_builds_the_callback(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent("""
        model: {name: vae, latent_dim: 4}
        data: {name: digits}
        eval: {fid_every_n_epochs: 2, num_samples: 500, feature: "classifier:weights/d.pt", real_split: val}
    """))
    cfg = load_config(config)
    assert cfg.eval.fid_every_n_epochs == 2 and cfg.eval.antialias is False and cfg.to_dict()["eval"]["real_split"] == "val"
    callback = FIDCallback(cfg.eval, seed=cfg.seed, record_path=tmp_path / "fid.jsonl")
    assert callback.settings is cfg.eval  # the section, whole: one name per setting
    assert (callback.every_n_epochs, callback.settings.num_samples, callback.settings.real_split) == (2, 500, "val")
    assert load_config(config).eval.report is True

    for override, message in (
        ("eval.feature=inceptionv3", "eval.feature 'inceptionv3': expected 'inception'"),
        ("eval.num_samples=1", "eval.num_samples: expected an integer >= 2, got 1"),
        ("eval.real_count=1", "eval.real_count: expected an integer >= 2 (or null), got 1"),
        ("eval.fid_num_samples=500", "eval.fid_num_samples was renamed to eval.num_samples"),
        ("eval.real_num_samples=500", "eval.real_num_samples was renamed to eval.real_count"),
        ("eval.stats_cache_dir=x", "eval.stats_cache_dir was renamed to eval.cache_dir"),
        ("eval.fid_batch_size=5", "eval.fid_batch_size was renamed to eval.batch_size"),
        ("eval.real_split=training", "eval.real_split: expected one of"),
        ("eval.fid_weight_path=x", "eval.fid_weight_path: unknown key"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(config, [override])
