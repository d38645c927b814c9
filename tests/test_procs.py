"""Child processes are reaped on every path, including when the harness itself is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from eden.runtime.procs import EXIT_ORPHANED, ProcessGroup, with_parent_death_signal


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_lines_logs_and_close(tmp_path: Path) -> None:
    lines: list[str] = []

    async def main() -> tuple[int, int]:
        group = ProcessGroup(tmp_path)
        p = await group.start("talker", [sys.executable, "-c", "import sys,time; print('one'); print('two', flush=True); sys.stderr.write('oops\\n'); time.sleep(60)"], on_line=lines.append)
        deadline = time.monotonic() + 10
        while len(lines) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pid = p.pid
        await group.close()
        return pid, p.proc.returncode or 0

    pid, rc = asyncio.run(main())
    assert lines == ["one", "two"]
    assert rc == -signal.SIGTERM
    assert not _alive(pid)
    assert "oops" in (tmp_path / "talker.log").read_text()


def test_children_die_with_a_killed_harness(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from eden.runtime.procs import EXIT_ORPHANED, ProcessGroup, with_parent_death_signal

        async def main():
            group = ProcessGroup(Path({str(tmp_path)!r}))
            p = await group.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"])
            print(p.pid, flush=True)
            await asyncio.sleep(120)

        asyncio.run(main())
        """
    )
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None
        child = int(harness.stdout.readline())
        # Kill the harness only once the child runs the sleeper, i.e. past setpriv's prctl: this test
        # checks the parent-death signal; a death before it is test_a_harness_dead_before_the_prctl...
        deadline = time.monotonic() + 10
        while b"time.sleep(120)" not in _cmdline(child) or b"setpriv" in _cmdline(child):
            assert _alive(child) and time.monotonic() < deadline, _cmdline(child)
            time.sleep(0.01)
        harness.kill()
        harness.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        harness.kill()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_harness_dead_before_the_prctl_starts_no_child(tmp_path: Path) -> None:
    """The window the parent-death signal cannot cover: the harness forks, then dies before the child
    armed PR_SET_PDEATHSIG; the orphan, now a child of init, would never be signalled. Made
    deterministic here: the 'harness' exits and its forked child execs the wrapped argv only once
    it has been reparented. The child must exit instead of running the target."""
    marker = tmp_path / "target-ran"
    target = [sys.executable, "-c", f"import time; open({str(marker)!r}, 'w').close(); time.sleep(60)"]
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from eden.runtime.procs import with_parent_death_signal

        argv = with_parent_death_signal({target!r})
        harness = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the pipe to the test closes with the harness
            while os.getppid() == harness:
                time.sleep(0.005)
            os.execv(argv[0], argv)
        print(pid, flush=True)
        os._exit(0)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, timeout=30, check=True)
    child = int(out.stdout)
    try:
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), _cmdline(child)
        assert not marker.exists()
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_the_parent_check_passes_for_a_live_harness(tmp_path: Path) -> None:
    """The wrapper runs the target, with its arguments intact, when the harness is alive; it exits
    with EXIT_ORPHANED, running nothing, when the expected parent is another process."""
    argv = [sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "$HOME", "--"]
    ok = subprocess.run(with_parent_death_signal(argv), stdout=subprocess.PIPE, text=True, timeout=30)
    assert (ok.returncode, ok.stdout.strip()) == (0, "['a b', '$HOME', '--']")
    other = subprocess.run(with_parent_death_signal(argv, parent=os.getppid()), stdout=subprocess.PIPE, text=True, timeout=30)
    assert (other.returncode, other.stdout) == (EXIT_ORPHANED, "")
