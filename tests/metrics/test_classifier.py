"""lit_gen.metrics.classifier: the offline FID feature extractor, its CLI, file format and sanity check."""

from __future__ import annotations

import pytest
import torch

from lit_gen.errors import CheckpointError
from lit_gen.metrics.classifier import SANITY_RATIO
from lit_gen.metrics.features import ClassifierFeatures, build_extractor, file_sha256
from lit_gen.nn.classifier import classifier_provenance, load_classifier
from tests.eval_helpers import digits_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return digits_classifier(tmp_path_factory)


def test_classifier_cli_learns_the_digits_and_passes_its_sanity_check(trained):
    path, code = trained
    assert code == 0  # the CLI exits 1 when the sanity check fails
    net, meta = load_classifier(path)
    assert meta["dataset"] == "digits" and meta["image_size"] == 8
    assert meta["test_accuracy"] > 0.8
    sanity = meta["sanity"]
    # Features of real digits: train and test are close; uniform noise is far from the test set.
    assert sanity["passed"] and sanity["fid_train_test"] < SANITY_RATIO * sanity["fid_noise_test"]
    assert sanity["test_count"] == 270 and sanity["train_count"] == 1374


def test_classifier_file_builds_an_extractor_labelled_with_its_dataset(trained):
    path, _ = trained
    extractor = build_extractor(f"classifier:{path}")
    assert isinstance(extractor, ClassifierFeatures)
    assert extractor.suffix == "-digits-classifier"
    assert extractor.weights_sha256 == file_sha256(path)
    out = extractor.extract(torch.rand(5, 1, 8, 8))
    assert out.features.shape == (5, 64) and out.logits.shape == (5, 10)


def test_other_files_are_refused_with_the_training_command(tmp_path):
    other = tmp_path / "model.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a lit_gen domain classifier"):
        load_classifier(other)
    with pytest.raises(CheckpointError, match="python -m lit_gen.metrics.classifier"):
        load_classifier(tmp_path / "missing.pt")


def test_classifier_file_records_the_command_that_rebuilds_it_bitwise(trained, tmp_path):
    import shlex

    from lit_gen.metrics import classifier

    path, _ = trained
    _, meta = load_classifier(path)
    command = meta["command"]
    assert command.startswith("python -m lit_gen.metrics.classifier --data digits")
    assert "--seed 0" in command and "--steps 150" in command and "--batch-size 64" in command
    # Running the recorded command again (into another file) gives the same weights, hence the same hash.
    args = shlex.split(command)[3:]
    again = tmp_path / "again.pt"
    args[args.index("--out") + 1] = str(again)
    assert classifier.main([*args, "--device", "cpu"]) == 0
    assert torch.equal(torch.load(again, weights_only=True)["state_dict"]["head.weight"],
                       torch.load(path, weights_only=True)["state_dict"]["head.weight"])
    assert classifier_provenance(again) == {"test_accuracy": meta["test_accuracy"], "command":
                                                       command.replace(str(path), str(again))}
