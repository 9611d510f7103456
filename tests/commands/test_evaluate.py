"""python -m lit_gen.evaluate end to end on a real digits run, with the domain classifier's features."""

from __future__ import annotations

import json
import shutil

import pytest

from lit_gen import evaluate
from lit_gen.cli import EXIT_USER_ERROR, run_main
from lit_gen.metrics.features import INCEPTION_WEIGHTS_URL, file_sha256
from lit_gen.metrics.protocol import FIDRecord, PROTOCOL_FIELDS
from tests.eval_helpers import digits_classifier, digits_run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return digits_run(tmp_path_factory), digits_classifier(tmp_path_factory)[0]


def run_evaluate(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        run_main(evaluate.main, args)
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_evaluate_writes_the_full_protocol_and_reuses_cached_real_statistics(setup, tmp_path, capsys):
    run, classifier = setup
    ckpt = run / "checkpoints" / "last.ckpt"
    args = ["--ckpt", str(ckpt), "--num-samples", "300", "--batch-size", "128", "--seed", "5", "--device", "cpu",
            "--feature", f"classifier:{classifier}", "--cache-dir", str(tmp_path / "cache")]
    code, out, _ = run_evaluate(args + ["--out", str(tmp_path / "a.json")], capsys)
    assert code == 0 and "FID-digits-classifier = " in out
    record = json.loads((tmp_path / "a.json").read_text())
    assert list(record) == list(PROTOCOL_FIELDS)
    assert record["metric"] == "FID-digits-classifier" and record["value"] > 0
    assert record["generated_count"] == 300 and record["real_count"] == 270
    assert (record["real_dataset"], record["real_split"], record["real_image_size"]) == ("digits", "test", 8)
    assert record["feature_weights_sha256"] == file_sha256(classifier) and record["feature_dim"] == 64
    assert record["checkpoint"] == str(ckpt) and record["global_step"] > 0 and record["seed"] == 5
    assert record["weights"] == "raw" and record["sampler"] is None and record["sample_options"] == {}
    assert set(record["extra_metrics"]) == {"KID-digits-classifier", "IS-digits-classifier"}
    assert not record["real_stats_reused"]
    # Beside the held-out FID: the same samples against the 1,374 training digits, memorisation, the floors.
    yardstick = record["yardstick"]
    assert (yardstick["train_split"], yardstick["train_count"], yardstick["heldout_count"]) == ("train", 1374, 270)
    assert yardstick["heldout_is_held_out"] and yardstick["fid_train"] > 0 and 0 <= yardstick["precision"] <= 1
    assert yardstick["floor_heldout"]["count"] == 300 and yardstick["floor_heldout"]["at_same_count"]
    assert yardstick["floor_train"]["count"] == 270 and not yardstick["floor_train"]["at_same_count"]
    assert yardstick["floor_heldout"]["value"] < record["value"]  # two epochs of a VAE are far from real digits
    assert "real-data floor" in out and "nearest-training-image ratio" in out
    assert evaluate.default_record_name(FIDRecord(**record)) == "FID-digits-classifier_300_raw_seed5.json"

    code, _, _ = run_evaluate(args + ["--out", str(tmp_path / "b.json")], capsys)
    again = json.loads((tmp_path / "b.json").read_text())
    assert code == 0 and again["real_stats_reused"] and again["real_stats_cache"] == record["real_stats_cache"]
    assert again["value"] == pytest.approx(record["value"], rel=1e-12)  # same seed, cached statistics: same FID
    assert again["extra_metrics"] == record["extra_metrics"]


def test_sampler_options_for_a_vae_are_a_clear_user_error(setup, tmp_path, capsys):
    run, classifier = setup
    code, _, err = run_evaluate(["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--num-samples", "10",
                                 "--feature", f"classifier:{classifier}", "--steps", "50", "--guidance", "3",
                                 "--cache-dir", str(tmp_path)], capsys)
    assert code == EXIT_USER_ERROR
    assert "VAE.sample() does not take guidance, steps" in err and "apply to diffusion checkpoints" in err


def test_a_checkpoint_without_its_run_folder_needs_data(setup, tmp_path, capsys):
    run, classifier = setup
    lone = tmp_path / "lone.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", lone)
    args = ["--ckpt", str(lone), "--num-samples", "20", "--feature", f"classifier:{classifier}", "--no-kid",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "r.json")]
    code, _, err = run_evaluate(args, capsys)
    assert code == EXIT_USER_ERROR and "pass --data NAME" in err
    code, _, _ = run_evaluate(args + ["--data", "digits"], capsys)
    assert code == 0 and json.loads((tmp_path / "r.json").read_text())["real_dataset"] == "digits"


def test_the_cli_refuses_inception_fid_without_weights_in_one_line(setup, cli, tmp_path):
    run, _ = setup
    result = cli("lit_gen.evaluate", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--num-samples", "10",
                 "--fid-weights-path", str(tmp_path / "missing.pth"))
    assert result.returncode == EXIT_USER_ERROR
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert INCEPTION_WEIGHTS_URL in result.stderr and "--fid-weights-path PATH" in result.stderr
