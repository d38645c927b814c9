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

from eden.backends.procs import ProcessGroup


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
        from eden.backends.procs import ProcessGroup

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
        assert _alive(child)
        harness.kill()
        harness.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        harness.kill()
