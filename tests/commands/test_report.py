"""lit_gen.report: report.md of a real run with its config, metrics, curves and samples."""

from __future__ import annotations

import json
import shutil

import pytest

from lit_gen import report
from lit_gen.cli import EXIT_USER_ERROR, run_main
from lit_gen.errors import LitGenError
from tests.eval_helpers import digits_run


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(digits_run(tmp_path_factory), copy)  # the report writes into the folder
    return copy


def test_report_shows_config_metrics_curves_and_last_samples(run):
    path = report.write_report(run)
    text = path.read_text()
    assert path == run / "report.md"
    assert "## Final metrics" in text and "| val/loss |" in text
    assert "## Config" in text and "name: vae_digits" in text and "latent_dim: 8" in text
    assert "![loss](report/loss.png)" in text and (run / "report" / "loss.png").is_file()
    assert "![kl](report/kl.png)" in text  # one figure per logged quantity
    grid = json.loads((run / "summary.json").read_text())["samples"]
    assert grid.endswith("final.png") and "![samples](samples/final.png)" in text
    assert "## FID" not in text  # no FID was measured in this run


def test_fid_records_appear_with_their_protocol(run):
    record = {"metric": "FID-digits-classifier", "value": 12.5, "generated_count": 100, "real_count": 270,
              "real_dataset": "digits", "real_split": "test", "sampler": None, "steps": None, "guidance": None,
              "weights": "raw", "epoch": 1, "feature_weights_sha256": "abcdef0123456789"}
    (run / "fid.jsonl").write_text(json.dumps(record) + "\n")
    text = report.write_report(run).read_text()
    assert "| FID-digits-classifier | 12.5000 | 100 | 270 digits/test | – | – | – | raw | 1 | abcdef012345 |" in text


def test_report_of_an_unfinished_run_and_of_a_non_run(run, tmp_path, capsys):
    (run / "summary.json").unlink()
    text = report.write_report(run).read_text()
    assert "did not finish" in text and "| val/loss |" in text  # metrics from metrics.jsonl
    with pytest.raises(LitGenError, match="not a run folder"):
        report.write_report(tmp_path / "nothing")
    with pytest.raises(SystemExit) as done:
        run_main(report.main, [str(tmp_path / "nothing")])
    assert done.value.code == EXIT_USER_ERROR and "not a run folder" in capsys.readouterr().err


def test_report_shows_the_trained_count_with_ema_and_frozen_apart(run):
    summary = json.loads((run / "summary.json").read_text())
    summary.update(parameters=1000, parameter_counts={"trained": 1000, "ema": 1000, "frozen": 250})
    (run / "summary.json").write_text(json.dumps(summary))
    text = report.write_report(run).read_text()
    assert "(1,000 parameters (+1,000 EMA copy, +250 frozen))" in text
    assert "2,250" not in text and "2,000" not in text
