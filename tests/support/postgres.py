"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a temp dir, ``pg_ctl`` on a free port.

Debian's ``postgresql`` package (``scripts/install-system-deps.sh`` installs it) provides the binaries; no running
service and no Docker are needed. The cluster belongs to the ``postgres`` OS user when the tests run as root
(``initdb`` refuses root) and to the current user otherwise. It gets a non-superuser login role that owns one
database, so the processor is tested with the privileges a platform team would grant it (no superuser, no
``CREATEDB``, no ``CREATEROLE``). Connections are TCP on 127.0.0.1 with SCRAM passwords, like a real deployment.

The helper can stop, restart, ``kill -9`` and restart the server (fault tests), and runs SQL as the cluster's
superuser through the local Unix socket (fault injection: ``ALTER DATABASE ... default_transaction_read_only``,
``pg_terminate_backend``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.procs import free_port

PG_ROLE = "otelml"
PG_PASSWORD = "otel-ml-test-password"
PG_DATABASE = "otelml"
PG_PASSWORD_ENV = "OTEL_ML_PG_PASSWORD"
"""The environment variable the tests' processor configs read the password from (``${env:OTEL_ML_PG_PASSWORD}``)."""


def pg_bindir() -> Path:
    """Directory of ``initdb``/``pg_ctl``/``postgres`` (newest Debian cluster version installed)."""
    override = os.environ.get("OTEL_ML_PG_BINDIR")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL not found (/usr/lib/postgresql/*/bin/initdb): run ./scripts/test.sh or "
                           "scripts/install-system-deps.sh, which install Debian's postgresql package")
    return Path(found[-1]).parent


class PostgresServer:
    """One throwaway cluster. ``start()`` creates it on first use; ``close()`` stops it and removes the directory."""

    def __init__(self, base: Path | None = None, settings: Sequence[str] = ()) -> None:
        self.bindir = pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="otel-ml-pg-", dir=base))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.settings = list(settings)
        self._user: pwd.struct_passwd | None = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self.superuser = self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name
        self._initialized = False

    # --- process control -------------------------------------------------------------------------------------------
    def _demote(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def _run(self, argv: Sequence[str], check: bool = True, timeout: float = 120.0,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "PGTZ": "UTC"}
        out = subprocess.run(list(argv), capture_output=True, text=True, env=env, preexec_fn=self._demote,
                             timeout=timeout, input=input, cwd=self.root)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n"
                               f"--- postgres log ---\n{self.log()}")
        return out

    def _init(self) -> None:
        self.socket_dir.mkdir()
        if self._user is not None:
            os.chmod(self.root, 0o755)
            for p in (self.root, self.socket_dir):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser, "-A", "trust",
                   "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
        conf = [
            f"port = {self.port}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{self.socket_dir}'",
            "max_connections = 100", "shared_buffers = 128MB", "fsync = on", "synchronous_commit = on",
            "deadlock_timeout = 200ms", "log_min_messages = warning", "log_line_prefix = '%m [%p] %q%u@%d '",
            "log_lock_waits = on", *self.settings,
        ]
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# otel-ml tests\n" + "\n".join(conf) + "\n")
        self._initialized = True

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Create the cluster (first call), start it and wait until it accepts connections."""
        first = not self._initialized
        if first:
            self._init()
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w",
                   "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        if first:
            self.psql(f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{PG_PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE")
            self.psql(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_ROLE}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (connections are terminated, a clean shutdown)."""
        if self.running():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], check=False)

    def restart(self) -> None:
        """Stop (fast) and start again: every open connection breaks."""
        self.stop()
        self.start()

    def kill9(self) -> None:
        """``kill -9`` of the postmaster (crash; the next start runs crash recovery from the WAL)."""
        pid = self.postmaster_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            # children notice the postmaster's death and exit; wait for them so the port is free again
            time.sleep(0.5)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _alive(pid)

    def close(self) -> None:
        """Stop the server (immediate) and delete its directory."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # --- SQL -------------------------------------------------------------------------------------------------------
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the cluster superuser over the Unix socket; returns the unaligned output."""
        out = self._run([str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.superuser, "-d", database,
                         "-c", sql])
        return out.stdout.strip()

    def dsn(self, password: str | None = PG_PASSWORD, database: str = PG_DATABASE, **params: str) -> str:
        """``postgresql://`` URL of the test role (``password=None`` leaves it out, for ``${env:...}`` tests)."""
        auth = PG_ROLE if password is None else f"{PG_ROLE}:{password}"
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    def create_database(self, name: str) -> str:
        """A fresh database owned by the test role (one per test that needs an empty store); returns its DSN."""
        self.psql(f"CREATE DATABASE {name} OWNER {PG_ROLE}")
        return self.dsn(database=name)

    def create_database_in(self, name: str, tablespace: str) -> str:
        """A database owned by the test role in ``tablespace`` (created by the superuser); returns its DSN."""
        self.psql(f"CREATE DATABASE {name} OWNER {PG_ROLE} TABLESPACE {tablespace}")
        return self.dsn(database=name)

    def terminate_backends(self, database: str) -> int:
        """``pg_terminate_backend`` every connection to ``database`` (a network cut / failover, seen by clients)."""
        return int(self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             f"WHERE datname = '{database}' AND pid <> pg_backend_pid()") or 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
