"""A private Postgres cluster with ``wal_level=logical``: for tests and the embedded default.

``LocalPostgres`` starts a cluster from the machine's server binaries (``pg_config --bindir``,
``PATH``, ``/usr/lib/postgresql/*/bin``) or, failing that, from the ``pgserver`` package on PyPI.
When running as root the server runs as an unprivileged user (``postgres`` or ``nobody``), since
Postgres refuses to run as root.

    with LocalPostgres() as pg:          # temporary data directory, free port
        psycopg.connect(pg.dsn)

    pg = LocalPostgres(data_dir=".nuvem/pgdata", keep=True)   # the embedded default
    pg.start()

Every cluster started is stopped by ``stop()`` (and by the context manager). A persistent
``data_dir`` is reused on the next start.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalPostgres", "PostgresNotFound", "find_bindir", "free_port"]

SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "max_connections": "200",
    "listen_addresses": "'127.0.0.1'",
    "log_min_messages": "warning",
    "wal_sender_timeout": "60s",
}


class PostgresNotFound(RuntimeError):
    """No Postgres server binaries were found. Hint: install them (Debian: `apt-get install
    postgresql`), or `pip install pgserver`, or set NUVEM_TEST_DATABASE_URL to an existing server."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_bindir() -> Path | None:
    """Directory holding ``initdb``/``pg_ctl``/``postgres``, or None."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.CalledProcessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    try:  # pgserver ships a full Postgres (with pgoutput) inside its wheel
        import pgserver  # type: ignore[import-not-found]

        c = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (c / "initdb").exists():
            return c
    except ImportError:
        pass
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres/nobody) to run Postgres as")


def _traversable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` can reach ``path`` (search permission on every ancestor)."""
    for d in [path, *path.parents]:
        if not d.exists():
            continue
        st = d.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == user.pw_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def _reachable_data_dir(data: Path) -> Path:
    """The directory the server actually uses for ``data``.

    As root the server runs as an unprivileged user, who may not reach a data directory below a
    private folder (``/root/project/.nuvem``). Then the cluster lives in
    ``/var/lib/nuvem-realtime/<hash>/data`` and ``data`` becomes a symlink to it.
    """
    if data.is_symlink():
        return data.resolve()
    osuser = _unprivileged_user()
    if osuser is None or _traversable_by(data.parent, osuser):
        return data
    import hashlib

    real = Path("/var/lib/nuvem-realtime") / hashlib.sha1(str(data).encode()).hexdigest()[:12] / "data"
    real.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(real.parent, 0o755)
    for d in real.parents:
        if d == Path("/var/lib"):
            break
        os.chmod(d, os.stat(d).st_mode | 0o011)
    data.parent.mkdir(parents=True, exist_ok=True)
    if not data.exists():
        data.symlink_to(real, target_is_directory=True)
    return real


@dataclass
class LocalPostgres:
    data_dir: str | os.PathLike[str] | None = None
    port: int | None = None
    keep: bool = False  # keep the data directory after stop (the embedded default)
    settings: dict[str, str] = field(default_factory=dict)
    user: str = "postgres"  # the database superuser created by initdb
    dbname: str = "postgres"

    _tmp: str | None = field(default=None, init=False, repr=False)
    _bindir: Path | None = field(default=None, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            b = find_bindir()
            if b is None:
                raise PostgresNotFound(PostgresNotFound.__doc__)
            self._bindir = b
        return self._bindir

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        osuser = _unprivileged_user()
        kwargs: dict = {}
        if osuser is not None:
            uid, gid = osuser.pw_uid, osuser.pw_gid

            def demote() -> None:
                os.setgid(gid)
                os.setuid(uid)

            kwargs["preexec_fn"] = demote
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        return subprocess.run(list(args), capture_output=True, text=True, check=False, env=env, cwd="/", **kwargs)

    def _chown(self, path: Path) -> None:
        osuser = _unprivileged_user()
        if osuser is not None:
            os.chown(path, osuser.pw_uid, osuser.pw_gid)

    def start(self) -> "LocalPostgres":
        if self._started:
            return self
        if self.data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="nuvem-pg-")
            os.chmod(self._tmp, 0o755)
            self.data_dir = os.path.join(self._tmp, "data")
        data = _reachable_data_dir(Path(self.data_dir).absolute())
        self.data_dir = data
        data.parent.mkdir(parents=True, exist_ok=True)
        if not (data / "PG_VERSION").exists():
            data.mkdir(mode=0o700, exist_ok=True)
            self._chown(data)
            r = self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust",
                          "-E", "UTF8", "--no-sync", "--locale=C.UTF-8")
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed in {data}:\n{r.stdout}\n{r.stderr}")
        if self.port is None:
            self.port = free_port()
        opts = dict(SERVER_SETTINGS, port=str(self.port), unix_socket_directories="''", **self.settings)
        with open(data / "postgresql.auto.conf", "w") as f:
            f.write("# written by nuvem-realtime LocalPostgres\n")
            for k, v in opts.items():
                f.write(f"{k} = {v}\n")
        log = data / "server.log"
        r = self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start")
        if r.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"Postgres failed to start on port {self.port}:\n{r.stdout}\n{r.stderr}\n{tail}")
        self._started = True
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server on the same port and data directory (for fault tests)."""
        self.stop_server(mode)
        self._started = False
        self.start()

    def stop_server(self, mode: str = "fast") -> None:
        if self._started and self.data_dir is not None:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")
            self._started = False

    def stop(self) -> None:
        self.stop_server()
        if not self.keep and self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
