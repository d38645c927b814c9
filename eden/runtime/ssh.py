"""SSH into a machine (a VM through QEMU's host forward, or a board), with a key the harness makes per run.

paramiko is blocking, so every call runs in a worker thread; every call takes a
:class:`~eden.runtime.deadline.Deadline`. :meth:`Ssh.connect` retries while sshd is still starting
(connection refused or reset, no banner yet: normal for a booting machine) until the deadline, then
raises :class:`~eden.errors.InfrastructureError` naming the last error.

The guest's host key is new at every image build, so it is trusted on first use for the lifetime of
one :class:`Ssh` object (a changed key within a run is refused).
Files are copied with ``cat`` over an exec channel, so no SFTP server is needed in the guest.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eden.runtime.deadline import Deadline
from eden.errors import InfrastructureError


class CommandResult(NamedTuple):
    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SshKey:
    """A private key file (OpenSSH format, mode 0600) and its ``authorized_keys`` line."""

    private: Path
    public_line: str

    @classmethod
    def generate(cls, directory: Path, name: str = "id_ed25519", comment: str = "eden-harness") -> "SshKey":
        directory.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        path = directory / name
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        path.touch(mode=0o600)
        path.write_bytes(pem)
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        line = f"{pub.decode()} {comment}"
        (directory / f"{name}.pub").write_text(line + "\n")
        return cls(path, line)

    def load(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key_file(str(self.private))


class _FirstUse(paramiko.MissingHostKeyPolicy):
    def __init__(self) -> None:
        self.seen: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.seen is not None and self.seen != key:
            raise paramiko.SSHException(f"host key of {hostname} changed during the run")
        self.seen = key


#: Errors that mean "sshd is not (yet) there": retried until the deadline.
RETRYABLE = (OSError, EOFError, paramiko.SSHException)


class Ssh:
    """One SSH session to ``host:port`` as ``user`` with ``key``."""

    def __init__(self, port: int, key: SshKey, *, host: str = "127.0.0.1", user: str = "root") -> None:
        self.host = host
        self.port = port
        self.key = key
        self.user = user
        self.attempts = 0
        self._policy = _FirstUse()
        self._client: paramiko.SSHClient | None = None

    async def connect(self, deadline: Deadline, retry_every: float = 0.5) -> None:
        """Connect and authenticate, retrying while sshd is starting, until ``deadline``."""
        pkey = self.key.load()
        last: BaseException | None = None
        while True:
            self.attempts += 1
            try:
                self._client = await asyncio.to_thread(self._connect_once, pkey, max(0.5, deadline.remaining()))
                return
            except paramiko.AuthenticationException as exc:
                raise InfrastructureError(f"ssh {self.user}@{self.host}:{self.port}: key refused ({exc})") from exc
            except RETRYABLE as exc:
                last = exc
            if deadline.remaining() <= retry_every:
                break
            await asyncio.sleep(retry_every)
        raise InfrastructureError(
            f"ssh {self.user}@{self.host}:{self.port}: no usable sshd after {self.attempts} attempts"
            f" (last error: {type(last).__name__}: {last})"
        )

    def _connect_once(self, pkey: paramiko.PKey, timeout: float) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(self._policy)
        try:
            client.connect(self.host, self.port, username=self.user, pkey=pkey, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, allow_agent=False,
                           look_for_keys=False)
        except BaseException:
            client.close()
            raise
        return client

    async def run(self, command: str, deadline: Deadline, stdin: bytes = b"") -> CommandResult:
        """Run ``command`` in the guest; its exit status, stdout and stderr."""
        rc, out, err = await asyncio.to_thread(self._run, command, stdin, deadline)
        return CommandResult(rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def _run(self, command: str, stdin: bytes, deadline: Deadline) -> tuple[int, bytes, bytes]:
        if self._client is None:
            raise InfrastructureError("ssh: not connected")
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise InfrastructureError("ssh: connection lost")
        try:
            chan = transport.open_session(timeout=max(0.1, deadline.remaining()))
            chan.settimeout(max(0.1, deadline.remaining()))
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                if deadline.expired():
                    chan.close()
                    raise InfrastructureError(f"ssh: {command!r} did not finish in time")
                chan.settimeout(max(0.1, deadline.remaining()))
                got = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if not got:
                    if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    chan.status_event.wait(0.05)
            rc = chan.recv_exit_status()
            chan.close()
            return rc, bytes(out), bytes(err)
        except (socket.timeout, TimeoutError) as exc:
            raise InfrastructureError(f"ssh: {command!r} did not finish in time") from exc
        except RETRYABLE as exc:
            raise InfrastructureError(f"ssh: {command!r} failed: {type(exc).__name__}: {exc}") from exc

    async def put(self, local: Path, remote: str, deadline: Deadline, mode: int = 0o644) -> None:
        """Copy a host file to ``remote`` in the guest."""
        quoted = shlex.quote(remote)
        res = await self.run(f"cat > {quoted} && chmod {mode:o} {quoted}", deadline, stdin=local.read_bytes())
        if res.rc != 0:
            raise InfrastructureError(f"ssh: copying {local} to {remote} failed (rc {res.rc}): {res.stderr.strip()}")

    async def get(self, remote: str, deadline: Deadline) -> bytes:
        """The contents of ``remote`` in the guest."""
        rc, out, err = await asyncio.to_thread(self._run, f"cat {shlex.quote(remote)}", b"", deadline)
        if rc != 0:
            raise InfrastructureError(f"ssh: reading {remote} failed (rc {rc}): {err.decode(errors='replace').strip()}")
        return out

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)
