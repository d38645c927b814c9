"""The working directory of a real-time run (eden.runtime.workdir): locked while its run lives,
removed by the next run once its owner is dead, never when it is alive or not ours."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from eden.runtime.workdir import LOCK, WorkDir, reap_stale


def test_a_live_run_keeps_its_directory_and_a_dead_one_is_reaped(tmp_path: Path) -> None:
    live = WorkDir.create("eden-emulated-", tmp_path)
    assert live.path.name.startswith("eden-emulated-") and (live.path / LOCK).is_file()
    assert live.path.stat().st_mode & 0o777 == 0o700
    (live.path / "device.key.pem").write_text("secret")
    assert reap_stale(tmp_path) == [] and live.path.is_dir()
    # A dead owner, as after a kill -9: the kernel dropped its lock, the directory stayed.
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from eden.runtime.workdir import WorkDir
        w = WorkDir.create("eden-qemu-", Path({str(tmp_path)!r}))
        (w.path / "admin.token").write_text("secret")
        print(w.path, flush=True)
        os._exit(0)
        """
    )
    dead = Path(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    assert dead.is_dir()
    unrelated = tmp_path / "eden-emulated-nolock"  # no lock file: not made by a run, left alone
    unrelated.mkdir()
    other = tmp_path / "something-else"
    other.mkdir()
    (other / LOCK).touch()
    fresh = WorkDir.create("eden-emulated-", tmp_path)  # a new run reaps as it starts
    assert not dead.exists()
    assert live.path.is_dir() and unrelated.is_dir() and other.is_dir() and fresh.path.is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".eden-new-")]
    live.remove()
    fresh.remove()
    assert not live.path.exists() and not fresh.path.exists()


def test_a_symlinked_lock_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").touch()
    trap = tmp_path / "eden-live-trap"
    trap.mkdir()
    os.symlink(target / "keep", trap / LOCK)
    link = tmp_path / "eden-live-link"
    os.symlink(target, link)
    assert reap_stale(tmp_path) == []
    assert trap.is_dir() and (target / "keep").exists()
