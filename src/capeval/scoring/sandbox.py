"""A sandbox for model-written code: run a program and its tests as hostile code, report pass/fail.

Layers, outermost first:

1. OS isolation, the strongest level the machine allows (`sandbox_isolation()` reports it):
   - "bwrap": bubblewrap with new pid, net, ipc, uts (and user, when not root) namespaces; only
     /usr, /lib*, /bin and the Python prefix are visible, read-only; a private tmpfs /tmp; the
     run's temporary directory bound read-write at /sandbox; dies with its parent.
   - "unshare": util-linux unshare with new net and pid namespaces (the whole tree dies with its
     first process); the file system is the host's, guarded by layer 3.
   - "rlimits": no namespaces at all, only layers 2 and 3. Weaker: a program could reach the
     network or the file system if it got past the in-process guard.
2. Resource limits on every level (prlimit): address space, file size, processes, CPU seconds,
   open files, no core files; each run in its own session and process group, a private temporary
   working directory, an environment holding nothing from the parent's (no secrets); stdout and
   stderr read in bounded chunks (the run is killed past `max_output_bytes`, never buffered whole);
   at the deadline the whole process group (and, when running as root, every process of the run's
   own user id) is killed.
   When capeval runs as root the program runs under a fresh unprivileged user id per concurrent
   run (the kernel ignores RLIMIT_NPROC for root, so a fork bomb would otherwise be unlimited);
   where no such id can be used, the guard forbids fork instead.
3. An in-process guard (a PEP 578 audit hook installed by the trusted runner `_runner.py` before
   the program runs, which Python code cannot remove): no new programs (subprocess, exec, system),
   no ctypes, no tracing or garbage-collector walks, no sockets, no signals to other processes,
   no /proc, no writes outside the work directory.

Why a pass cannot be forged: the parent sends a random per-run nonce on the runner's stdin; the
runner reads it before any untrusted code runs, hands it to the audit hook's closure and deletes
its own reference. After the program AND the tests (`check(entry_point)`) have returned normally,
the runner raises the audit event "capeval.finish"; the hook writes the nonce to a pipe only if
the event comes from the runner's own frame (checked by frame identity), once. The parent calls
a run passed only when the exit status is 0 and the pipe holds exactly the nonce. So exiting
early (sys.exit(0) or os._exit(0), before the asserts), printing a success marker, raising the
event itself, or replacing builtins/AssertionError does not pass: the program never learns the
nonce (stdin is swapped for /dev/null, the closure is reachable only through the garbage
collector, tracing or ctypes, all refused by the hook; adding a second audit hook is refused too),
and the tests run with a copy of the builtins taken before the program ran.
Known limit: the tests run in the same interpreter as the program, so a program that returns
objects with a forged __eq__, or walks stack frames to patch the tests' own globals, can still
bend an assert. That is deliberate cheating in the model's code, visible in the stored samples;
it cannot reach the nonce or the host.
"""

from __future__ import annotations

import functools
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from capeval.errors import CapevalError

Status = Literal["passed", "failed", "timeout", "killed", "error"]
Isolation = Literal["bwrap", "unshare", "rlimits"]
LEVELS: tuple[Isolation, ...] = ("bwrap", "unshare", "rlimits")

SANDBOX_DIR = "/sandbox"  # where the work directory appears inside bubblewrap
_RUNNER = (Path(__file__).with_name("_runner.py")).read_text(encoding="utf-8")
_TAIL = 4096


class SandboxError(CapevalError):
    """The sandbox could not be set up (an isolation level that is not available here)."""


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one program.

    status: "passed" (exit 0 and the nonce proof), "failed" (ran and did not prove a pass),
    "timeout" (killed at the deadline), "killed" (by a resource limit or the output cap),
    "error" (the sandbox itself failed to start the program).
    """

    passed: bool
    status: Status
    stdout_tail: str
    stderr_tail: str
    isolation: str
    exit_code: int | None = None
    duration_s: float = 0.0
    reason: str = ""


# ---- isolation levels ---------------------------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


def _python() -> str:
    return os.path.realpath(sys.executable)


PYTHON_MOUNT = "/opt/capeval-python"  # where the interpreter's prefix appears inside bubblewrap


def _python_home() -> tuple[str, str]:
    """(prefix, interpreter path relative to it) of the base interpreter. The sandbox runs it with
    -I -S, so a virtualenv's site-packages are not needed."""
    prefix = os.path.realpath(sys.base_prefix)
    exe = Path(prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not exe.exists():
        exe = Path(_python())
    return prefix, os.path.relpath(os.path.realpath(exe), prefix)


def _sandbox_python() -> str:
    return f"{PYTHON_MOUNT}/{_python_home()[1]}"


def _world_reachable(path: str) -> bool:
    """Whether an unprivileged user can execute `path` (every parent directory is o+x)."""
    p = Path(path)
    for part in [p, *p.parents]:
        try:
            if not os.stat(part).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _bwrap_prefix(workdir: str, uid: int | None, tmpfs_bytes: int) -> list[str]:
    args = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for d in ("/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        args += ["--ro-bind-try", d, d]
    # the interpreter's prefix at a neutral path: its home (e.g. under /root) may not be
    # reachable by the sandbox's unprivileged user
    prefix, _ = _python_home()
    args += ["--perms", "0755", "--dir", str(Path(PYTHON_MOUNT).parent), "--ro-bind", prefix, PYTHON_MOUNT]
    args += ["--dev", "/dev", "--proc", "/proc", "--size", str(tmpfs_bytes), "--tmpfs", "/tmp"]
    args += ["--bind", workdir, SANDBOX_DIR, "--chdir", SANDBOX_DIR]
    args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv"]
    for k, v in _env(SANDBOX_DIR).items():
        args += ["--setenv", k, v]
    if any(Path(prefix, "lib").glob("libpython*.so*")):
        # the interpreter finds its shared library through a RUNPATH at its real location, which
        # is not mounted; without this the loader would pick up the system's libpython instead
        args += ["--setenv", "LD_LIBRARY_PATH", f"{PYTHON_MOUNT}/lib"]
    if uid is None:
        args += ["--unshare-user"]
    else:
        # root: no user namespace, so the setpriv below gives the program a real unprivileged uid
        # that RLIMIT_NPROC applies to; bwrap drops every other capability
        args += ["--cap-add", "CAP_SETUID,CAP_SETGID"]
    args += ["--"]
    return args


def _setpriv(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]


def _unshare_prefix() -> list[str]:
    args = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if not _is_root():
        args += ["--user", "--map-root-user"]
    return args + ["--"]


def _env(home: str) -> dict[str, str]:
    """The program's whole environment: nothing is inherited from capeval's (API keys stay out)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _probe(cmd: list[str], cwd: str) -> bool:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=20, env=_env(cwd), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and r.stdout.strip() == b"ok"


@functools.cache
def available_levels() -> tuple[Isolation, ...]:
    """The isolation levels that work on this machine, strongest first ("rlimits" always)."""
    probe = [_python(), "-I", "-S", "-c", "print('ok')"]
    bwrap_probe = [_sandbox_python(), *probe[1:]]
    found: list[Isolation] = []
    with tempfile.TemporaryDirectory(prefix="capeval-probe-") as wd:
        os.chmod(wd, 0o755)
        if shutil.which("bwrap"):
            uid = _run_uid_base() if _is_root() else None
            extra = _setpriv(uid) if uid is not None and shutil.which("setpriv") else []
            if (uid is None or extra) and _probe(_bwrap_prefix(wd, uid, 1 << 20) + extra + bwrap_probe, wd):
                found.append("bwrap")
        if shutil.which("unshare") and _probe(_unshare_prefix() + probe, wd):
            found.append("unshare")
    found.append("rlimits")
    return tuple(found)


def sandbox_isolation() -> Isolation:
    """The isolation level programs run under here: $CAPEVAL_SANDBOX if set (and available), else
    the strongest available ("bwrap", then "unshare", then "rlimits")."""
    wanted = os.environ.get("CAPEVAL_SANDBOX")
    levels = available_levels()
    if wanted:
        if wanted not in LEVELS:
            raise SandboxError(f"unknown sandbox level '{wanted}'", f"CAPEVAL_SANDBOX must be one of {', '.join(LEVELS)}")
        if wanted not in levels:
            raise SandboxError(
                f"sandbox level '{wanted}' is not available on this machine",
                f"available: {', '.join(levels)}; install bubblewrap (apt-get install bubblewrap) for 'bwrap'",
            )
        return wanted  # type: ignore[return-value]
    return levels[0]


# ---- per-run user ids (root only) ---------------------------------------------------------------


def _run_uid_base() -> int:
    # far above regular accounts; offset by pid so two capeval processes rarely share ids
    return 200_000 + (os.getpid() % 4096) * 64


class _UidPool:
    """Unprivileged user ids for concurrent runs: each run gets its own, so one program's fork
    bomb exhausts only its own RLIMIT_NPROC, and the deadline can kill every process of that id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[int] = []
        self._next = 0

    def acquire(self) -> int:
        with self._lock:
            if self._free:
                return self._free.pop()
            self._next += 1
            return _run_uid_base() + self._next % 64

    def release(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)


_UIDS = _UidPool()


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def _count_own_processes() -> int:
    return len(_pids_of_uid(os.getuid()))


def _kill_uid(uid: int) -> None:
    """Kill every process of a run's private uid (catches ones that left the process group)."""
    for _ in range(3):
        pids = _pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


# ---- running one program ------------------------------------------------------------------------


def _limits(timeout_s: float, memory_mb: int, max_file_bytes: int, nproc: int) -> dict[str, int]:
    return {
        "as": memory_mb * 1024 * 1024,
        "fsize": max_file_bytes,
        "nproc": nproc,
        "cpu": int(timeout_s) + 1,
        "core": 0,
        "nofile": 256,
    }


def _set_limits(limits: dict[str, int]) -> None:
    """In the child before exec, for machines without prlimit (util-linux)."""
    import resource

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name.upper()}"), (value, value))


def _prlimit(timeout_s: float, memory_mb: int, max_file_bytes: int, nproc: int) -> list[str]:
    if not shutil.which("prlimit"):
        return []  # the limits are set by _set_limits in the child instead
    cpu = int(timeout_s) + 1
    mem = memory_mb * 1024 * 1024
    return [
        "prlimit",
        f"--as={mem}:{mem}",
        f"--fsize={max_file_bytes}:{max_file_bytes}",
        f"--nproc={nproc}:{nproc}",
        f"--cpu={cpu}:{cpu}",
        "--core=0:0",
        "--nofile=256:256",
        "--",
    ]


def _tail(buf: bytearray) -> str:
    return bytes(buf[-_TAIL:]).decode("utf-8", errors="replace")


def run_program(
    code: str,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    *,
    test: str = "",
    max_processes: int = 32,
    max_file_bytes: int = 16 * 1024 * 1024,
    max_output_bytes: int = 1024 * 1024,
    isolation: Isolation | None = None,
    policy: bool = True,
) -> ExecutionResult:
    """Run untrusted `code`, then `test` (which sees the code's names), as hostile code.

    Args:
        code: the program (for HumanEval: prompt + completion).
        timeout_s: wall-clock limit; everything is killed at the deadline.
        memory_mb: address-space limit (RLIMIT_AS) of every process.
        test: code run after it, typically asserts ending in `check(entry_point)`; the run passes
            only if both return normally (see the module docstring for why this cannot be faked).
            Without tests, a program passes when it runs to its end.
        max_processes: RLIMIT_NPROC for the run.
        max_file_bytes: RLIMIT_FSIZE: the largest file the program may write.
        max_output_bytes: stdout + stderr beyond this kills the run (status "killed").
        isolation: force a level (default: `sandbox_isolation()`).
        policy: the in-process policy layer (no sockets, signals, /proc, writes outside the work
            directory). Turn off only to test the OS layer beneath it.
    """
    level = isolation or sandbox_isolation()
    if level not in available_levels():
        raise SandboxError(f"sandbox level '{level}' is not available on this machine", f"available: {', '.join(available_levels())}")
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="capeval-run-")
    uid: int | None = None
    block_fork = False
    if _is_root() and shutil.which("setpriv") and (level == "bwrap" or _world_reachable(_python())):
        uid = _UIDS.acquire()
        os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        nproc = max_processes
    elif _is_root():
        # root without a private uid: the kernel would not enforce RLIMIT_NPROC, so no fork at all
        nproc, block_fork = max_processes, True
    else:
        # RLIMIT_NPROC counts all of this user's processes, so the budget sits on top of them
        nproc = _count_own_processes() + max_processes
    inside = SANDBOX_DIR if level == "bwrap" else workdir
    cmd = _prlimit(timeout_s, memory_mb, max_file_bytes, nproc)
    if level == "bwrap":
        cmd += _bwrap_prefix(workdir, uid, max(max_file_bytes * 4, 64 << 20))
    elif level == "unshare":
        cmd += _unshare_prefix()
    if uid is not None:
        cmd += _setpriv(uid)
    result_r, result_w = os.pipe()
    nonce = secrets.token_hex(16).encode()
    cmd += [_sandbox_python() if level == "bwrap" else _python(), "-I", "-S", "-c", _RUNNER, str(result_w)]
    import json

    job = json.dumps({"code": code, "test": test, "workdir": inside, "policy": policy, "block_fork": block_fork})
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_env(inside),
            pass_fds=(result_w,),
            start_new_session=True,
            # only without prlimit: setrlimit in the forked child is async-signal-safe enough, and
            # there is no other way to limit a child that has not exec'd yet
            preexec_fn=None  # noqa: PLW1509
            if shutil.which("prlimit")
            else functools.partial(_set_limits, _limits(timeout_s, memory_mb, max_file_bytes, nproc)),
        )
    except OSError as e:
        os.close(result_r)
        os.close(result_w)
        _cleanup(workdir, uid)
        return ExecutionResult(False, "error", "", "", level, None, time.monotonic() - start, f"could not start: {e}")
    os.close(result_w)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    def feed() -> None:
        try:
            proc.stdin.write(nonce + b"\n" + job.encode())  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass  # the program died before reading its job; the status says so

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out, err, proof = bytearray(), bytearray(), bytearray()
    total = 0
    reason = ""
    status: Status | None = None
    deadline = start + timeout_s
    exited_at: float | None = None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    sel.register(result_r, selectors.EVENT_READ, proof)
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                status, reason = "timeout", f"no result within {timeout_s:g}s"
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # leftover children keep the pipes open; the main program is done
            for key, _ in sel.select(timeout=min(0.05, max(0.0, deadline - now))):
                fd = key.fd if isinstance(key.fileobj, int) else key.fileobj.fileno()  # type: ignore[union-attr]
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                if buf is proof:
                    if len(proof) < 256:
                        proof += chunk
                    continue
                total += len(chunk)
                buf += chunk
                if len(buf) > 2 * _TAIL:
                    del buf[: len(buf) - _TAIL]
                if total > max_output_bytes:
                    status, reason = "killed", f"output limit exceeded ({max_output_bytes} bytes)"
                    break
            if status:
                break
    finally:
        sel.close()
        _kill_group(proc)
        if uid is not None:
            _kill_uid(uid)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdout, proc.stderr):
            f.close()
        os.close(result_r)
        feeder.join(timeout=1)
        _cleanup(workdir, uid)
    rc = proc.returncode
    if status is None:
        if rc == 0 and bytes(proof) == nonce:
            status = "passed"
        elif rc is not None and rc < 0:
            sig = -rc
            status = "killed"
            reason = f"killed by signal {signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig}"
        else:
            status = "failed"
            reason = "exit status 0 without the harness's proof of a finished test" if rc == 0 else f"exit status {rc}"
    return ExecutionResult(
        status == "passed", status, _tail(out), _tail(err), level, rc, time.monotonic() - start, reason
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _cleanup(workdir: str, uid: int | None) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    if uid is not None:
        _UIDS.release(uid)


@dataclass(frozen=True)
class Job:
    """One program for `run_programs`."""

    code: str
    test: str = ""
    timeout_s: float = 10.0


def default_workers() -> int:
    """A small pool: programs are mostly waiting on the interpreter's start, one per core plus one."""
    return max(1, min(8, (os.cpu_count() or 1) + 1))


def run_programs(
    jobs: Sequence[Job],
    workers: int | None = None,
    memory_mb: int = 1024,
    isolation: Isolation | None = None,
) -> list[ExecutionResult]:
    """Run many programs in parallel (a small thread pool, one sandboxed process per job), results
    in job order. A program that crashes, hangs or attacks the sandbox fails alone."""
    level = isolation or sandbox_isolation()
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        futures = [pool.submit(run_program, j.code, j.timeout_s, memory_mb, test=j.test, isolation=level) for j in jobs]
        return [f.result() for f in futures]
