"""Password hashing with argon2id (argon2-cffi defaults) and the rules a new password must meet.

argon2 is deliberately slow and memory-hungry (~64 MiB per hash with the defaults), so hashing runs on
a small dedicated thread pool: it never blocks the event loop, and a login flood cannot hash more than
HASH_WORKERS passwords at once.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from periodya.errors import PeriodyaError

MIN_LENGTH = 12
MAX_LENGTH = 1024
HASH_WORKERS = 4

_HASHER = PasswordHasher()
_POOL = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="argon2")


class WeakPassword(PeriodyaError):
    code = "WEAK_PASSWORD"


def check_new_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password must be at most {MAX_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random secret nobody knows, with the same parameters as real hashes."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, new hash if the stored one should be upgraded).

    With no stored hash (unknown email) this still runs one full argon2 verification, against a dummy
    hash, so the time taken does not reveal whether the email exists."""
    try:
        _HASHER.verify(stored_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False, None
    if stored_hash is None:
        return False, None
    return True, (hash_password(password) if _HASHER.check_needs_rehash(stored_hash) else None)


async def hash_password_async(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_POOL, hash_password, password)


async def verify_password_async(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    return await asyncio.get_running_loop().run_in_executor(_POOL, verify_password, stored_hash, password)
