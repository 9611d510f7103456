"""lit_gen.compare on small real runs of four families on digits (AE, VAE, VQ-VAE + prior, DDPM),
evaluate --bpd, the table's honesty rules, sweeps and the W&B table."""

from __future__ import annotations

import json
import math
import re
import socket

import pytest
import torch

from lit_gen.cli import run_main
from lit_gen.comparing.collect import read_run
from lit_gen.comparing.table import build_table
from lit_gen.comparing.wandb_table import log_table, table_data, wandb_target

QUICK = ["trainer.max_epochs=1", "trainer.limit_val_batches=2", "logger.wandb=false", "trainer.accelerator=cpu",
         "run.num_samples=4", "eval.report=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four tiny runs (one epoch each) sharing one runs/ folder."""
    from lit_gen.fit import main as fit

    out = tmp_path_factory.mktemp("runs")
    common = [*QUICK, f"run.output_dir={out}"]
    assert fit(["--config", "configs/ae_digits.yaml", *common, "--run-id", "ae"]) == 0
    assert fit(["--config", "configs/vae_digits.yaml", "model.likelihood=gaussian", *common, "--run-id", "vae"]) == 0
    assert fit(["--config", "configs/vqvae_digits.yaml", *common, "--run-id", "vq"]) == 0
    assert fit(["--config", "configs/vqvae_digits.yaml", "model.quantizer={name: fsq, levels: [5, 3, 2]}", *common,
                "--run-id", "fsq"]) == 0
    first_stage = out / "vqvae_digits" / "vq" / "checkpoints" / "last.ckpt"
    assert fit(["--config", "configs/prior_vqvae_digits.yaml", f"model.first_stage={first_stage}", "model.n_layer=1",
                "model.n_embd=32", *common, "--run-id", "prior"]) == 0
    assert fit(["--config", "configs/ddpm_digits.yaml", "model.base_channels=8", "model.num_res_blocks=1",
                "model.objective.timesteps=50", "run.sample_options={steps: 5}", *common, "--run-id", "ddpm"]) == 0
    return {name: out / folder / name for name, folder in
            [("ae", "ae_digits"), ("vae", "vae_digits"), ("vq", "vqvae_digits"), ("fsq", "vqvae_digits"),
             ("prior", "prior_vqvae_digits"),
             ("ddpm", "ddpm_digits")]}


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    from lit_gen.compare import main

    out = tmp_path_factory.mktemp("comparison")
    assert main([*map(str, runs.values()), "--measure", "--count", "64", "--bpd-samples", "4", "--out", str(out)]) == 0
    return out


def row_of(markdown: str, run: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {run} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


@torch.no_grad()
def recomputed_bits_per_dim(run, *, split: str, count: int, samples: int, seed: int) -> float:
    """A run's bits/dim computed here from its checkpoint, with the protocol a record names (the first ``count``
    images of ``split``, one batch, a generator seeded with ``seed``): the VAE's IWAE bound with ``samples``
    draws, or DDPM's bound over all its terms with its EMA network, as the evaluation promises."""
    from lit_gen.checkpoints import load_model
    from lit_gen.diffusion.likelihood import variational_bound
    from lit_gen.metrics.reference import datamodule_for_checkpoint

    checkpoint = run / "checkpoints" / "last.ckpt"
    model = load_model(checkpoint).eval()
    datamodule, _ = datamodule_for_checkpoint(checkpoint)
    datamodule.prepare_data()
    dataset = datamodule.dataset(split)
    x = torch.stack([dataset[i][0] for i in range(count)])
    generator = torch.Generator().manual_seed(seed)
    if hasattr(model, "objective"):
        net = model.ema.averaged
        nats = variational_bound(lambda x_t, t: net(x_t, t), model.objective, x,
                                 generator=generator).total
    else:
        nats = -model.likelihood_bounds(x, samples=samples, generator=generator).iw
    return float(nats.double().mean()) / (x[0].numel() * math.log(2))


def test_report_has_a_row_per_run_with_bits_per_dim_where_a_family_defines_it(report, runs):
    markdown = (report / "report.md").read_text()
    header = row_of(markdown, "run")
    column = {name: i for i, name in enumerate(header)}
    vae, ddpm, ae, prior = (row_of(markdown, r) for r in ("vae_digits/vae", "ddpm_digits/ddpm", "ae_digits/ae",
                                                          "prior_vqvae_digits/prior"))
    # The cell is the run's record, and the record is the bound of the run's own checkpoint on the first 64 test
    # images (compare --measure: seed 0, one batch; 1e-4 relative covers float32 sums of ~200 nats per image).
    for name, row in (("vae", vae), ("ddpm", ddpm)):
        record = json.loads(next((runs[name] / "likelihood").glob("bpd_test_64_*.json")).read_text())
        assert row[column["bits/dim"]] == f"{record['bits_per_dim']:.4f} (test N=64)", row
        assert record["bits_per_dim"] == pytest.approx(
            recomputed_bits_per_dim(runs[name], split="test", count=64, samples=4, seed=0), rel=1e-4)
    assert vae[column["likelihood bound"]] == "IWAE k=4"
    assert ddpm[column["likelihood bound"]] == "VLB over all T=50 terms"
    assert re.match(r"\d+\.\d{4}", prior[column["bits/code"]])
    # Blanks carry a numbered reason, never a zero.
    note = re.fullmatch(r"– \[(\d+)\]", ae[column["bits/dim"]]).group(1)
    assert f"[{note}] an autoencoder defines no likelihood" in markdown
    note = re.fullmatch(r"– \[(\d+)\]", prior[column["bits/dim"]]).group(1)
    assert f"[{note}] the VQ decoder is deterministic" in markdown
    assert re.match(r"\d+\.\d{5} \(test N=64\)", ae[column["reconstruction MSE"]])
    assert ddpm[column["trained parameters"]].endswith("ema)")
    assert "frozen" in prior[column["trained parameters"]]
    # The record evaluate --bpd would write is kept in the run for later comparisons.
    record = json.loads(next((runs["ddpm"] / "likelihood").glob("bpd_*.json")).read_text())
    assert (record["split"], record["count"], record["timesteps"], record["terms"]) == ("test", 64, 50, 49)


@torch.no_grad()
def test_every_quantizer_has_its_rate_in_bits_per_image(report, runs):
    from lit_gen.checkpoints import load_model
    from lit_gen.metrics.reference import datamodule_for_checkpoint

    markdown = (report / "report.md").read_text()
    column = {name: i for i, name in enumerate(row_of(markdown, "run"))}
    datamodule, _ = datamodule_for_checkpoint(runs["vq"] / "checkpoints" / "last.ckpt")
    test_set = datamodule.dataset("test")
    images = torch.stack([test_set[i][0] for i in range(64)])
    for name, levels in (("vq", 32), ("fsq", 30)):
        record = json.loads((runs[name] / "measures" / "reconstruction.json").read_text())
        model = load_model(runs[name] / "checkpoints" / "last.ckpt").eval()
        counts = torch.bincount(model.encode_indices(images).flatten(), minlength=model.num_codes).double()
        probs = counts[counts > 0] / counts.sum()
        # 4x4 codes per 8x8 digit: 16 positions of log2 K bits at face value; the entropy of the codes used.
        assert record["bits_per_image"] == pytest.approx(16 * math.log2(levels))
        assert record["entropy_bits_per_image"] == pytest.approx(16 * float(-(probs * probs.log2()).sum()), rel=1e-9)
        assert record["quantizer"]["name"] == name
        row = row_of(markdown, f"vqvae_digits/{name}")
        assert row[column["bits/image"]].startswith(f"{record['entropy_bits_per_image']:.1f} ")
    assert (report / "figures" / "rate_distortion.png").is_file()
    prior = row_of(markdown, "prior_vqvae_digits/prior")
    assert prior[column["bits/image"]].startswith("–")  # a prior samples codes; it has no rate of its own


def test_html_is_self_contained_and_holds_every_figure(report):
    page = (report / "report.html").read_text()
    figures = sorted((report / "figures").glob("*.png"))
    assert {f.name for f in figures} >= {"loss_steps.png", "loss_wall_time.png", "samples.png"}
    assert page.count("<img") == len(figures) == (report / "report.md").read_text().count("](figures/")
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]+)"', page))
    assert "<script" not in page and "http" not in page


def test_measured_runs_are_compared_from_their_files_without_measuring_again(report, runs, tmp_path, monkeypatch):
    # What --measure promises ("later comparisons are instant"): what a run holds is read, never remade, so no
    # checkpoint is loaded and no measure runs, even when --measure is asked for again.
    from lit_gen import checkpoints
    from lit_gen.comparing import measure
    from lit_gen.compare import main

    def refuse(*args, **kwargs):
        raise AssertionError("comparing measured runs loaded a checkpoint or measured again")

    monkeypatch.setattr(checkpoints, "load_model", refuse)
    for name in ("measure_sampling", "measure_reconstruction", "measure_likelihood"):
        monkeypatch.setattr(measure, name, refuse)
    assert main([*map(str, runs.values()), "--measure", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text() == (report / "report.md").read_text()


def test_fid_of_different_protocols_goes_to_different_columns(report, runs):
    base = {"metric": "FID-digits-classifier", "feature_weights_sha256": "ab" * 32, "real_dataset": "digits",
            "real_split": "test", "real_count": 270, "generated_count": 1000, "sampler": None, "steps": None,
            "guidance": None, "weights": "raw", "global_step": 21, "extra_metrics": {}}
    vae, ddpm = read_run(runs["vae"]), read_run(runs["ddpm"])
    vae.fid_records = [dict(base, value=30.0)]
    ddpm.fid_records = [dict(base, value=20.0, sampler="ddim", steps=50, weights="ema"),
                        dict(base, value=25.0, generated_count=5000, sampler="ddim", steps=50, weights="ema")]
    table = build_table([vae, ddpm])
    fid_columns = [c for c in table.columns if c.startswith("FID")]
    assert fid_columns == ["FID-digits-classifier [generated N=1000]", "FID-digits-classifier [generated N=5000]"]
    same, other = table.column(fid_columns[0]), table.column(fid_columns[1])
    assert [c.value for c in same] == [30.0, 20.0] and same[1].text == "20.000 (ddim50, ema)"
    assert other[0].blank and "no FID-digits-classifier record with this protocol" in other[0].reason
    for row in table.rows:
        assert all(cell.reason for cell in row if cell.blank), "a blank without its reason"


def test_evaluate_bpd_writes_a_record_with_its_protocol(runs, capsys, tmp_path):
    from lit_gen.evaluate import main

    out = tmp_path / "vae.json"
    assert main(["--ckpt", str(runs["vae"] / "checkpoints" / "last.ckpt"), "--bpd", "--bpd-samples", "3",
                 "--real-split", "val", "--real-count", "20", "--seed", "5", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert (record["family"], record["split"], record["count"], record["samples"], record["seed"]) == ("vae", "val", 20, 3, 5)
    # The value is the IWAE bound of this checkpoint under that protocol (1e-4 relative: float32 sums)...
    value = record["bits_per_dim"]
    assert value == pytest.approx(recomputed_bits_per_dim(runs["vae"], split="val", count=20, samples=3, seed=5),
                                  rel=1e-4)
    # ... no looser than the ELBO of the same draws, and below the 8 bits/dim of a uniform guess over 256 levels.
    assert value <= record["extra"]["elbo_bits_per_dim"] and value < 8
    # One epoch of training tightens it: the same network freshly initialised scores worse on the same images
    # (measured 4.46 against 4.75 bits/dim; 0.1 is a third of that gap).
    from lit_gen.checkpoints import load_model
    from lit_gen.metrics.likelihood import evaluate_likelihood
    from lit_gen.metrics.reference import datamodule_for_checkpoint

    trained = load_model(runs["vae"] / "checkpoints" / "last.ckpt")
    torch.manual_seed(0)
    untrained = type(trained)(**trained.hparams)
    datamodule, _ = datamodule_for_checkpoint(runs["vae"] / "checkpoints" / "last.ckpt")
    datamodule.prepare_data()
    fresh = evaluate_likelihood(untrained, datamodule.dataset("val"), split="val", count=20, samples=3, seed=5)
    assert fresh.bits_per_dim > value + 0.1
    assert "bits/dim" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        run_main(main, ["--ckpt", str(runs["vae"] / "checkpoints" / "last.ckpt"), "--bpd", "--bpd-terms", "4"])
    assert info.value.code == 2
    assert "only diffusion models with discrete timesteps have terms" in capsys.readouterr().err


def test_compare_measure_refuses_diffusion_terms_out_of_range_in_one_line(runs, tmp_path, capsys):
    from lit_gen.compare import main

    import shutil

    run = tmp_path / "ddpm_digits" / "ddpm"  # a copy: --refresh rewrites measures other tests read
    shutil.copytree(runs["ddpm"], run)
    with pytest.raises(SystemExit) as info:
        run_main(main, [str(run), "--measure", "--refresh", "--bpd-terms", "100000", "--out", str(tmp_path / "c")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "terms=100000: choose 1 .. 49" in err and len(err.splitlines()) == 1


def test_prior_bits_per_code_is_its_cross_entropy(runs):
    from lit_gen.checkpoints import load_model
    from sklearn.datasets import load_digits

    prior = load_model(runs["prior"] / "checkpoints" / "last.ckpt").eval()
    digits = load_digits()
    x = torch.tensor(digits.images[:16], dtype=torch.float32).unsqueeze(1) / 16.0 * 2 - 1
    labels = torch.tensor(digits.target[:16])
    per_image = prior.code_nll(x, labels)
    codes = prior.code_shape[0] * prior.code_shape[1]
    assert torch.allclose(per_image.mean() / codes, prior.loss((x, labels)).total, atol=1e-5)


def test_offline_w_and_b_writes_files_only_and_the_table_keeps_numbers(runs, report, monkeypatch, tmp_path):
    # ``report`` measured the runs (--measure): the autoencoder's bits/dim is then blank for its own reason.
    from lit_gen.compare import compare

    def refuse(*args, **kwargs):
        raise AssertionError("the offline comparison opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    environ = {"WANDB_MODE": "offline", "WANDB_API_KEY": "x" * 40}
    assert wandb_target(environ) is None
    compare([read_run(runs["vae"]), read_run(runs["ae"])], tmp_path, environ=environ)
    assert (tmp_path / "report.html").is_file()
    table = build_table([read_run(runs["vae"]), read_run(runs["ae"])])
    assert log_table(table, environ) is None
    columns, data = table_data(table)
    assert columns[-1] == "blank because" and len(data) == 2
    steps = columns.index("steps")
    assert isinstance(data[0][steps], int) and data[0][steps] == read_run(runs["vae"]).steps
    bpd = columns.index("bits/dim")
    assert data[1][bpd] is None and "bits/dim: an autoencoder defines no likelihood" in data[1][-1]


def test_sweep_store_sorted_with_parallel_coordinates_and_importances(runs, tmp_path):
    from lit_gen.compare import main
    from lit_gen.comparing.sweeps import param_importances, read_sweep
    from lit_gen.sweeping.space import parse_sweep
    from lit_gen.sweeping.store import COMPLETE, TrialStore

    spec = parse_sweep({"method": "grid", "program": "lit_gen.fit", "metric": {"name": "val/loss", "goal": "minimize"},
                        "parameters": {"model.lr": {"values": [1e-4, 1e-3, 1e-2]},
                                       "model.beta": {"values": [0.5, 1.0]}}}, source="s.yaml")
    store = TrialStore(tmp_path / "store", spec)
    # The metric depends on the learning rate alone: it must come out as the important parameter.
    for i, (lr, beta) in enumerate([(1e-4, 0.5), (1e-3, 0.5), (1e-2, 0.5), (1e-4, 1.0), (1e-3, 1.0), (1e-2, 1.0)]):
        with store.claim():
            trial = store.create(params={"model.lr": lr, "model.beta": beta}, coords={}, grid_index=i)
        value = {1e-4: 3.0, 1e-3: 1.0, 1e-2: 2.0}[lr] + 0.01 * i
        run_dir = str(runs["vae"]) if i == 1 else None
        store.finish(trial, COMPLETE, value, {"run_dir": run_dir} if run_dir else None)
    view = read_sweep(tmp_path / "store")
    assert [t.value for t in view.trials] == sorted(t.value for t in view.trials)
    importances, reason = param_importances(view)
    assert reason is None and max(importances, key=importances.get) == "model.lr"
    out = tmp_path / "report"
    assert main(["--sweep", str(tmp_path / "store"), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "## Sweep" in markdown and "figures/sweep_parallel.png" in markdown and "| model.lr |" in markdown
    assert "vae_digits/vae" in markdown, "the trials' runs are compared too"


@pytest.mark.parametrize("argv, message", [
    (["/nonexistent/run"], "is not a run folder"),
    (["--glob", "/nonexistent/*/*"], "matches no run folder"),
    (["--sweep", "/nonexistent"], "is not a sweep store"),
    ([], "nothing to compare"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys, tmp_path):
    from lit_gen.compare import main

    with pytest.raises(SystemExit) as info:
        run_main(main, [*argv, "--out", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_an_active_w_and_b_run_receives_the_table(runs, tmp_path, monkeypatch):
    import wandb

    table = build_table([read_run(runs["vae"]), read_run(runs["ddpm"])])
    # wandb.init exports WANDB_SERVICE (its service's socket); later test subprocesses that inherit
    # it would attach to this process's service instead of starting their own.
    monkeypatch.setenv("WANDB_SERVICE", "")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="lit_gen_test")
    try:
        assert wandb_target({"WANDB_MODE": "offline"}) == "active"
        assert log_table(table, {"WANDB_MODE": "offline"}) == run.id
    finally:
        run.finish()
        wandb.teardown()
    [logged] = list(tmp_path.glob("wandb/offline-run-*/files/media/table/comparison_*.table.json"))
    content = json.loads(logged.read_text())
    assert content["columns"] == table_data(table)[0] and len(content["data"]) == 2


@pytest.mark.parametrize("family, kwargs, reason", [
    ("diffusion", {"objective": "edm"}, "objective edm: its likelihood (probability flow) is not implemented"),
    ("diffusion", {"objective": "flow"}, "objective flow"),
    ("vae", {"likelihood": "bernoulli"}, "likelihood: bernoulli is not a distribution over 256 grey levels"),
])
def test_families_without_a_comparable_likelihood_get_a_reason_not_a_number(family, kwargs, reason):
    from torch.utils.data import TensorDataset

    from lit_gen import registry
    from lit_gen.metrics.likelihood import evaluate_likelihood

    small = {"diffusion": dict(channels=1, image_size=8, base_channels=8, channel_mults=(1,), num_res_blocks=1,
                               attention_resolutions=(), norm_groups=8),
             "vae": dict(channels=1, image_size=8, hidden_dims=(8,), latent_dim=2)}[family]
    model = registry.resolve("model", family)(**small, **kwargs)
    data = TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    record = evaluate_likelihood(model, data, count=4)
    assert record.bits_per_dim is None and reason in record.reason
