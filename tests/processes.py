"""New processes that start like ``python -m module args...`` without importing torch and Lightning again.

A command-line process spends most of a short test in its imports (torch, Lightning, torchmetrics and
torchvision: 5-10 s of CPU on a busy 2-core machine, against about a second of training). A
``Launcher`` pays them once: it starts ``python -m tests.processes``, which imports the heavy modules
and then forks one child per command. Each child is a new process that has run nothing before its
command: its own pid (it can be SIGKILLed), exit code, cwd, environment, stdout and stderr, and
``python -m`` semantics (the module runs as ``__main__``, ``sys.argv`` is the command line, exit
handlers run, Python's and NumPy's global generators are seeded afresh). Whatever the imports printed
is written at the top of every child's stdout and stderr, as a real start would print it. Siblings
share the imported modules and the interpreter's hash seed: tests that compare separate processes (a
run and its resumption) take each from its own launcher.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The slow imports of a lit_gen command, all third-party: lit_gen itself is imported afresh by every child
#: (a fraction of a second), so a command that forgets one of its own imports fails here as it would for a user.
PRELOAD = ("torch", "lightning", "sklearn.datasets")


class Child:
    """One command started by a ``Launcher``: ``poll``, ``wait`` and ``kill`` as on ``subprocess.Popen``."""

    def __init__(self, launcher: "Launcher", pid: int) -> None:
        self.launcher, self.pid, self.returncode = launcher, pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.launcher._ask({"op": "poll", "pid": self.pid})["code"]
        return self.returncode

    def wait(self, timeout: float = 600) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        return self.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)


class Launcher:
    """A process with torch and Lightning imported that forks a fresh child for every command."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self.server = subprocess.Popen([sys.executable, "-m", "tests.processes", *preload], cwd=REPO,
                                       env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        self.children: list[Child] = []
        self.ready = False  # several launchers started together import side by side

    def _ask(self, request: dict) -> dict:
        if not self.ready:
            line = self.server.stdout.readline()
            assert line.strip() == "ready", f"tests.processes did not start: {line!r}"
            self.ready = True
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        return json.loads(self.server.stdout.readline())

    def start(self, module: str, *args: str, cwd: Path | None = None, env: dict | None = None,
              stdout: Path | None = None, stderr: Path | None = None) -> Child:
        """``python -m module args`` in ``cwd`` with exactly ``env``; output to the files given, else discarded."""
        child = Child(self, self._ask({"op": "start", "module": module, "args": list(args), "cwd": str(cwd or REPO),
                                       "env": dict(os.environ if env is None else env),
                                       "stdout": str(stdout or os.devnull), "stderr": str(stderr or os.devnull)})["pid"])
        self.children.append(child)
        return child

    def run(self, module: str, *args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        """Like ``subprocess.run(..., capture_output=True, text=True)``."""
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            code = self.start(module, *args, cwd=cwd, env=env, stdout=out, stderr=err).wait(timeout)
            return subprocess.CompletedProcess([module, *args], code, out.read_text(), err.read_text())

    def close(self) -> None:
        for child in self.children:
            if child.returncode is None:
                child.kill()
                child.wait()
        self.server.stdin.close()
        self.server.wait(timeout=60)


# ------------------------------------------------------------------------------------------ the server
def _exit_code(exc: SystemExit) -> int:
    """The exit status ``python`` gives a SystemExit: None is 0, an int itself, anything else printed and 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(request: dict, preamble: tuple[bytes, bytes]) -> None:
    """Become ``python -m module args``: never returns."""
    import atexit
    import random
    import runpy
    import threading
    import traceback

    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, text in ((1, request["stdout"], preamble[0]), (2, request["stderr"], preamble[1])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(target, text)
            os.dup2(target, fd)
            os.close(target)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if "OMP_NUM_THREADS" in os.environ:  # read by OpenMP when it starts, which the server never did
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        # A new interpreter seeds Python's and NumPy's global generators from the OS: siblings must not draw alike.
        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        sys.argv = [request["module"], *request["args"]]
        sys.path[0] = os.getcwd()  # what python -m puts first
        sys.modules.pop(request["module"], None)  # run as __main__, not as the module a preload imported
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:
            traceback.print_exc()
        threading._shutdown()  # what the interpreter does at exit: join threads, then the exit handlers
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(preload: list[str]) -> None:
    """Import ``preload`` (recording what that prints), then serve start/poll requests on stdin."""
    import importlib

    replies = os.fdopen(os.dup(1), "w")
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        for name in preload:
            importlib.import_module(name)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in ((1, saved[0]), (2, saved[1])):
            os.dup2(copy, fd)
            os.close(copy)
        preamble = []
        for f in (out, err):
            f.seek(0)
            preamble.append(f.read())
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # nothing but replies on the reply pipe
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                replies.close()
                _child(request, tuple(preamble))
            reply = {"pid": pid}
        else:  # poll
            done, status = os.waitpid(request["pid"], os.WNOHANG)
            reply = {"code": os.waitstatus_to_exitcode(status) if done else None}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve(sys.argv[1:])
