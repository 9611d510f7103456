"""bench/table.py on synthetic records: one column per protocol, verdicts with their intervals."""

import json

import pytest

from bench import table
from bench.common import Target
from bench.stats import ratio_of_means
from lit_gen.metrics.protocol import COMPARABLE_FIELDS


def protocol(**changes):
    base = {name: None for name in COMPARABLE_FIELDS} | {
        "metric": "FID-digits-classifier", "feature_extractor": "classifier", "feature_weights_sha256": "ab" * 32,
        "real_dataset": "digits", "real_split": "train", "real_count": 1797, "real_image_size": 8,
        "generated_count": 1000, "sampler": "ddim", "steps": 50, "weights": "ema",
        "train_images": {"dataset": "digits", "split": "all", "count": 1797}}
    return base | changes


def entry(arm, seed, value, **changes):
    return {"arm": arm, "seed": seed, "value": value, "protocol": protocol(**changes),
            "feature": {"feature_test_accuracy": 0.97}}


def record(entries, varies=(), targets=()):
    return {"name": "peer", "command": "python -m bench.diffusers_peer", "date": "2026-12-05T00:00:00",
            "machine": {"cpu": "cpu", "cores": 2, "load_average_start": [0.5]}, "headline": {"FID": "see below"},
            "targets": list(targets), "fid": entries, "fid_varies": list(varies)}


def test_one_protocol_gives_one_column_with_mean_and_sd():
    entries = [entry("lit_gen", s, v) for s, v in enumerate([10.0, 12.0, 11.0])] + [entry("peer", 0, 30.0)]
    text = table.fid_table(record(entries), "peer.json")
    assert "| lit_gen | 11.00 ± 1.00 | 3 (0, 1, 2) |" in text
    assert "N=1797" in text and "1000 generated" in text and "ddim 50 steps" in text and "test accuracy 0.970" in text
    assert "abababababab" in text


def test_mixing_protocols_is_refused_naming_the_fields():
    entries = [entry("lit_gen", 0, 10.0), entry("peer", 0, 30.0, real_count=1374, steps=100)]
    with pytest.raises(table.ProtocolMismatch) as error:
        table.fid_table(record(entries), "peer.json")
    message = str(error.value)
    assert "real_count: 1797 vs 1374" in message and "steps: 50 vs 100" in message
    assert "lit_gen and peer" in message and "peer.json" in message


def test_another_feature_network_is_refused():
    entries = [entry("lit_gen", 0, 10.0), entry("peer", 0, 30.0, feature_weights_sha256="cd" * 32)]
    with pytest.raises(table.ProtocolMismatch, match="feature_weights_sha256"):
        table.fid_table(record(entries), "peer.json")


def test_fields_a_record_varies_on_purpose_are_rows_not_a_mismatch():
    entries = [entry("ddpm", 0, 8.0, sampler="ddpm", steps=1000), entry("ddim", 0, 9.0)]
    text = table.fid_table(record(entries, varies=("sampler", "steps")), "sampling.json")
    assert "| ddpm, sampler ddpm, steps 1000 |" in text and "| ddim, sampler ddim, steps 50 |" in text
    with pytest.raises(table.ProtocolMismatch, match="real_count"):
        table.fid_table(record([entries[0], entry("ddim", 0, 9.0, real_count=10)], varies=("sampler", "steps")), "s.json")


def test_the_readme_table_shows_verdicts_and_refuses_a_mixed_record(tmp_path):
    inconclusive = Target("FID ratio", 0.4, "<=", 0.5, interval=ratio_of_means([4.0, 12.0, 8.0], [20.0, 18.0, 22.0]))
    good = record([entry("lit_gen", 0, 10.0)], targets=[inconclusive.to_dict(), Target("peak", 1.0, "<=", 2.0).to_dict()])
    (tmp_path / "diffusers_peer.json").write_text(json.dumps(good))
    readme = tmp_path / "README.md"
    readme.write_text(f"# B\n\n{table.START}\nstale row\n{table.END}\ntail\n")
    assert table.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "inconclusive (0.4 [" in text and "n=[3, 3]" in text
    assert "holds (single measurement, 1; no interval)" in text
    assert "stale row" not in text and text.endswith("tail\n")
    bad = record([entry("lit_gen", 0, 10.0), entry("peer", 0, 30.0, generated_count=500)])
    (tmp_path / "sampling.json").write_text(json.dumps(bad))
    assert table.main(["--results", str(tmp_path), "--readme", str(readme)]) == 2
    assert readme.read_text() == text  # nothing written
