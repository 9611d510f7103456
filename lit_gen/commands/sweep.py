"""Run a W&B sweep file without the W&B server: grid, random or bayes, with hyperband stopping.

    python -m lit_gen.sweep sweeps/vae_mnist_beta.yaml --count 4
    python -m lit_gen.sweep sweeps/ddpm_cifar_lr.yaml --count 2 --store /shared/sweeps/ddpm_lr   # per node / array task
    python -m lit_gen.sweep sweeps/vqvae_codebook.yaml --count 3 --dry-run                       # print the commands only

The same file works with W&B's own agent (``wandb sweep FILE`` then ``wandb agent ID``). Offline,
each agent claims trials from a store folder that any number of agents can share (on a shared
filesystem for several nodes), runs each trial as ``lit_gen.fit`` in a subprocess, stops weak ones
with hyperband, and at the end prints and saves (``<store>/summary.json``, ``summary.csv``) the
table of trials and the best config.

Options:
    --count N           trials this agent runs (default: until the grid, run_cap or metric.target ends it)
    --store DIR         the shared store folder (default: runs/sweeps/<sweep name>)
    --dry-run           validate the sweep and print the first N trials' commands; run nothing
    --seed S            seed of random draws and of TPE (default 0)
    --poll-interval S   seconds between reads of a running trial's metrics (default 1)
    --kill-grace S      seconds between SIGTERM and SIGKILL when stopping a trial (default 30)
    --stale-after S     release a running trial whose agent sent no heartbeat for S seconds (default 600)

Exit codes: 0 done, 1 every trial of this agent failed, 2 a bad sweep file or store, 130 interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import signal
from pathlib import Path

from lit_gen.cli import run_main, setup_logging
from lit_gen.errors import SweepError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lit_gen.sweep", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="W&B sweep YAML file")
    parser.add_argument("--count", type=int, default=None, help="trials this agent runs")
    parser.add_argument("--store", default=None, help="store folder shared by the sweep's agents")
    parser.add_argument("--dry-run", action="store_true", help="print the first trials' commands and exit")
    parser.add_argument("--seed", type=int, default=0, help="seed of random draws and TPE")
    parser.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--kill-grace", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--stale-after", type=float, default=600.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    setup_logging()
    from lit_gen.sweeping.space import load_sweep

    spec = load_sweep(args.sweep)
    if args.count is not None and args.count < 1:
        raise SweepError(f"--count must be at least 1, got {args.count}")
    store_dir = Path(args.store) if args.store else Path("runs") / "sweeps" / spec.name
    if args.dry_run:
        return dry_run(spec, store_dir, args.count or 3, args.seed)
    if args.count is None and spec.method != "grid" and spec.run_cap is None and (spec.metric is None or spec.metric.target is None):
        raise SweepError(f"{spec.source}: a {spec.method} sweep never ends by itself: give --count N "
                         "(or run_cap: / metric.target: in the sweep file)")

    import optuna

    from lit_gen.sweeping.agent import SweepAgent
    from lit_gen.sweeping.summary import format_table, summarize, write_summary

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per in-memory TPE study otherwise
    # SLURM and `kill` send SIGTERM: stop the running trial and free its point for another agent.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    agent = SweepAgent(spec, store_dir, seed=args.seed, poll_interval=args.poll_interval,
                       kill_grace=args.kill_grace, stale_after=args.stale_after)
    print(f"sweep {agent.store.sweep_id}: {spec.method} search, store {agent.store.directory}", flush=True)
    result = agent.run(args.count)
    summary = summarize(spec, agent.store.sweep_id, agent.store.trials())
    json_path, csv_path = write_summary(agent.store.directory, summary)
    print()
    print(format_table(summary))
    print()
    print(f"this agent ran {len(result.trials)} trial(s); stopped because {result.reason}")
    print(f"summary: {json_path} and {csv_path.name}")
    ran_any = [t for t in result.trials if t.state in ("complete", "pruned")]
    return 1 if result.trials and not ran_any else 0


def dry_run(spec, store_dir: Path, count: int, seed: int) -> int:
    """Print what the sweep would run, touching nothing."""
    from lit_gen.sweeping.command import build_argv, require_flag_style
    from lit_gen.sweeping.strategies import GridStrategy, RandomStrategy

    require_flag_style(spec)
    metric = f"; {spec.metric.goal} {spec.metric.name}" if spec.metric else ""
    grid = GridStrategy(spec) if spec.method == "grid" else None
    size = f", {grid.size} points" if grid else ""
    print(f"sweep {spec.name}: {spec.method} search over {len(spec.parameters)} parameter(s){size}{metric}")
    for param in spec.parameters:
        print(f"  {param.name}: {describe(param)}")
    if spec.early_terminate:
        from lit_gen.sweeping.hyperband import bands

        shown = bands(spec.early_terminate)[:6]
        print(f"  hyperband: compare trials after {', '.join(map(str, shown))}, ... iterations; keep the best 1/{spec.early_terminate.eta:g}")
    print(f"store: {store_dir} (not created by --dry-run)")
    print(f"first {count} trial(s){' (bayes starts from draws of the prior)' if spec.method == 'bayes' else ''}:")
    random = RandomStrategy(spec, seed)
    for number in range(count):
        if grid is not None:
            if number >= grid.size:
                break
            params = grid.point(number)
        else:
            params = random.suggest([], number).params
        argv = build_argv(spec, spec.nest(params), run_id=f"{spec.name}-{number:03d}", display=True,
                          extras={"run.output_dir": str(store_dir / "runs"), "logger.group": spec.name},
                          json_file=store_dir / "args" / f"{number:03d}.json")
        print("  " + shlex.join(argv))
    return 0


def describe(param) -> str:
    """One line about a parameter's distribution."""
    d = param.distribution
    if d == "constant":
        return f"constant {param.value!r}"
    if d == "categorical":
        return f"one of {list(param.values)}"
    if d == "categorical_w_probabilities":
        return "one of " + ", ".join(f"{v!r} (p={p:g})" for v, p in zip(param.values, param.probabilities))
    if d in ("normal", "q_normal", "log_normal", "q_log_normal"):
        return f"{d} mu={param.mu:g} sigma={param.sigma:g}" + (f" q={param.q}" if d.startswith("q_") else "")
    if d in ("beta", "q_beta"):
        return f"{d} a={param.a:g} b={param.b:g}" + (f" q={param.q}" if d == "q_beta" else "")
    return f"{d} from {param.min} to {param.max}" + (f" step {param.q}" if d.startswith("q_") else "")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt

