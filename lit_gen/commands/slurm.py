"""Submit a training run to SLURM: slurm/fit.sbatch with the #SBATCH lines written for you.

    python -m lit_gen.slurm submit --config configs/ddpm_cifar.yaml --nodes 2 --gpus-per-node 4 --time 24:00:00
    python -m lit_gen.slurm submit --config configs/vae_mnist.yaml --partition gpu --account proj model.beta=0.5
    python -m lit_gen.slurm submit --config configs/vae_digits.yaml --gpus-per-node 0 --tasks-per-node 2  # CPU nodes
    python -m lit_gen.slurm submit --config configs/ddpm_cifar.yaml --nodes 2 --gpus-per-node 4 --dry-run

The config and the overrides are validated here, before anything waits in a queue. The job runs
``srun python -m lit_gen.fit --config CONFIG trainer.devices=G trainer.num_nodes=N ...`` with one
task per GPU (Lightning's rule: tasks per node = ``trainer.devices``), saves and requeues itself
before its time limit, and resumes in the same run folder ``<output_dir>/<name>/slurm-<job id>/``.
``--dry-run`` prints the sbatch command and the script it would submit, and submits nothing.

Options of ``submit``:
    --config FILE         the YAML config (required)
    --nodes N             nodes (default 1)
    --gpus-per-node G     GPUs per node = training processes per node (default 1); 0 trains on CPUs
    --tasks-per-node T    processes per node; must equal G when G > 0 (default G, or 1 on CPUs)
    --time HH:MM:SS       wall time of one job (default 24:00:00); longer trainings requeue and resume
    --partition P, --account A, --cpus-per-task C, --mem M (e.g. 64G), --job-name NAME
    --script FILE         the batch script template (default: slurm/fit.sbatch of this repository)
    --dry-run             print the command and the script; submit nothing
Anything else is passed to lit_gen.fit: overrides (model.lr=1e-4) or --run-id slurm-<old id> to
continue an earlier job's run.

Exit codes: 0 submitted (or printed), 2 a bad config, option or failed submission.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lit_gen.cli import run_main, setup_logging
from lit_gen.errors import ConfigError, LitGenError

DEFAULT_SCRIPT = Path(__file__).resolve().parents[2] / "slurm" / "fit.sbatch"
_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")  # SLURM's forms: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]


@dataclass
class JobSpec:
    """The resources of one training job; ``sbatch_options()`` turns them into #SBATCH options."""

    job_name: str
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    time: str
    partition: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None

    def sbatch_options(self) -> list[str]:
        options = [f"--job-name={self.job_name}", f"--nodes={self.nodes}", f"--ntasks-per-node={self.tasks_per_node}"]
        if self.gpus_per_node > 0:
            options.append(f"--gres=gpu:{self.gpus_per_node}")
        else:
            # fit.sbatch refuses to start without a GPU unless told the job is meant for CPUs.
            options.append("--export=ALL,LIT_GEN_ACCELERATOR=cpu")
        options.append(f"--time={self.time}")
        for flag, value in (("partition", self.partition), ("account", self.account),
                            ("cpus-per-task", self.cpus_per_task), ("mem", self.mem)):
            if value is not None:
                options.append(f"--{flag}={value}")
        return options


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m lit_gen.slurm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit lit_gen.fit as a SLURM job", allow_abbrev=False,
                                 epilog="Other arguments go to lit_gen.fit (overrides such as model.lr=1e-4).")
    submit.add_argument("--config", required=True, help="YAML config file")
    submit.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    submit.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per node, one process each; 0 for CPU nodes")
    submit.add_argument("--tasks-per-node", type=int, default=None, help="processes per node (= GPUs per node)")
    submit.add_argument("--time", default="24:00:00", help="wall time of one job, e.g. 24:00:00")
    submit.add_argument("--partition", default=None, help="SLURM partition")
    submit.add_argument("--account", default=None, help="account charged for the job")
    submit.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per process")
    submit.add_argument("--mem", default=None, help="memory per node, e.g. 64G")
    submit.add_argument("--job-name", default=None, help="job name (default: lit_gen-<config name>)")
    submit.add_argument("--script", default=None, help="batch script template (default: slurm/fit.sbatch)")
    submit.add_argument("--dry-run", action="store_true", help="print the sbatch command and script; submit nothing")
    return parser.parse_known_args(argv)


def job_spec(args: argparse.Namespace, config_name: str) -> JobSpec:
    """Check the resource options and apply Lightning's one-process-per-GPU rule."""
    if args.nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, got {args.nodes}")
    if args.gpus_per_node < 0:
        raise ConfigError(f"--gpus-per-node must be 0 (CPU nodes) or more, got {args.gpus_per_node}")
    tasks = args.tasks_per_node if args.tasks_per_node is not None else max(args.gpus_per_node, 1)
    if tasks < 1:
        raise ConfigError(f"--tasks-per-node must be at least 1, got {tasks}")
    if args.gpus_per_node > 0 and tasks != args.gpus_per_node:
        raise ConfigError(
            f"--tasks-per-node {tasks} with --gpus-per-node {args.gpus_per_node}: Lightning runs one process per GPU, "
            f"so the tasks per node must equal the GPUs per node; drop --tasks-per-node or make both {args.gpus_per_node}")
    if not _TIME.match(args.time):
        raise ConfigError(f"--time {args.time!r} is not a SLURM time; use HH:MM:SS (e.g. 24:00:00) or D-HH:MM:SS")
    if args.cpus_per_task is not None and args.cpus_per_task < 1:
        raise ConfigError(f"--cpus-per-task must be at least 1, got {args.cpus_per_task}")
    return JobSpec(job_name=args.job_name or f"lit_gen-{config_name}", nodes=args.nodes, tasks_per_node=tasks,
                   gpus_per_node=args.gpus_per_node, time=args.time, partition=args.partition,
                   account=args.account, cpus_per_task=args.cpus_per_task, mem=args.mem)


def check_config(config: str, fit_args: list[str], spec: JobSpec):
    """Validate the config as the job will see it; the overrides must not contradict the job's shape.

    Returns the resolved config and the ``--run-id`` given to lit_gen.fit (None: the job id decides).
    """
    from lit_gen.config import load_config
    from lit_gen.fit import parse_args as fit_parse_args

    fit_options, overrides = fit_parse_args(["--config", config, *fit_args])
    # What fit.sbatch passes before the user's overrides.
    forced = [f"trainer.devices={spec.tasks_per_node}", f"trainer.num_nodes={spec.nodes}"]
    cfg = load_config(config, [*forced, *overrides])
    for key, wanted, option in (("devices", spec.tasks_per_node, "--gpus-per-node/--tasks-per-node"),
                                ("num_nodes", spec.nodes, "--nodes")):
        if cfg.trainer.get(key) != wanted:
            raise ConfigError(
                f"the override trainer.{key}={cfg.trainer.get(key)} contradicts the job ({option} gives {wanted}): "
                f"Lightning needs trainer.{key} to match the SLURM allocation, so fit.sbatch sets it; drop the override")
    if spec.gpus_per_node > 0 and cfg.trainer.get("accelerator") == "cpu":
        raise ConfigError("trainer.accelerator=cpu with GPUs requested: use --gpus-per-node 0 to train on CPU nodes")
    return cfg, fit_options.run_id


def render_script(template: str, options: list[str], drop: tuple[str, ...] = ()) -> str:
    """The template with ``options`` as its #SBATCH lines.

    An option replaces the template's line for the same flag (or fills in its commented-out
    ``##SBATCH`` example); others go after the last #SBATCH line. Lines for ``drop``'s flags go.
    """
    lines = template.splitlines()

    def flag_of(line: str, prefix: str) -> str | None:
        if not line.startswith(prefix):
            return None
        words = line[len(prefix):].split()
        return words[0].split("=", 1)[0] if words else None

    active = [i for i, line in enumerate(lines) if flag_of(line, "#SBATCH ")]
    if not active:
        raise ConfigError("the batch script has no #SBATCH line; is it slurm/fit.sbatch?")
    extra: list[str] = []
    for option in options:
        flag = option.split("=", 1)[0]
        at = next((i for i in active if flag_of(lines[i], "#SBATCH ") == flag), None)
        if at is None:
            at = next((i for i, line in enumerate(lines) if flag_of(line, "##SBATCH ") == flag), None)
        if at is None:
            extra.append(f"#SBATCH {option}")
        else:
            lines[at] = f"#SBATCH {option}"
    last = max(i for i, line in enumerate(lines) if flag_of(line, "#SBATCH "))
    lines[last + 1:last + 1] = extra
    lines = [line for line in lines if flag_of(line, "#SBATCH ") not in drop]
    return "\n".join(lines) + "\n"


def log_path(script: str, job_name: str, job_id: str = "%j") -> str | None:
    """The job's log file from the script's ``--output`` line (``%x`` and ``%j`` filled in)."""
    match = re.search(r"^#SBATCH\s+--output=(\S+)", script, flags=re.MULTILINE)
    return match.group(1).replace("%x", job_name).replace("%j", job_id) if match else None


def submit(args: argparse.Namespace, fit_args: list[str]) -> int:
    config_path = Path(args.config)
    if not config_path.is_file():
        raise ConfigError(f"--config {args.config}: no such file")
    spec = job_spec(args, config_path.stem)
    cfg, run_id = check_config(args.config, fit_args, spec)
    template_path = Path(args.script) if args.script else DEFAULT_SCRIPT
    if not template_path.is_file():
        raise ConfigError(f"batch script {template_path} not found; pass --script path/to/fit.sbatch")
    # CPU nodes: no GPU request (the template asks for one).
    script = render_script(template_path.read_text(), spec.sbatch_options(),
                           drop=("--gres", "--gpus-per-node") if spec.gpus_per_node == 0 else ())
    script_name = f"{spec.job_name}.sbatch"
    command = ["sbatch", "--parsable", script_name, args.config, *fit_args]

    if args.dry_run:
        print("# sbatch command (the script below is written to a temporary file and submitted):")
        print(shlex.join(command))
        print(f"# {script_name}")
        print(script, end="")
        return 0

    if shutil.which("sbatch") is None:
        raise LitGenError("sbatch not found: submit from a SLURM login node, or use --dry-run to see the job")
    log = log_path(script, spec.job_name)
    if log and not Path(log).is_absolute():
        Path(log).parent.mkdir(parents=True, exist_ok=True)  # SLURM does not create the log's folder
    with tempfile.TemporaryDirectory() as folder:
        script_file = Path(folder) / script_name
        script_file.write_text(script)
        command[2] = str(script_file)
        proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LitGenError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    print(f"submitted job {job_id} ({spec.nodes} node(s) x {spec.tasks_per_node} process(es))")
    if log:
        print(f"log        {log_path(script, spec.job_name, job_id)}")
    print(f"run folder {Path(cfg.run.output_dir) / cfg.name / (run_id or f'slurm-{job_id}')}")
    return 0


def main(argv: list[str]) -> int:
    args, rest = parse_args(argv)
    setup_logging()
    if args.command == "submit":
        return submit(args, rest)
    raise AssertionError(args.command)

