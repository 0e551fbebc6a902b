"""Password rules and argon2id hashing: no database."""

from __future__ import annotations

import io

import pytest
from argon2 import PasswordHasher

from periodya.admin import passwords
from periodya.cli.admin import read_password


def test_hash_is_argon2id_and_verifies() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, "correct horse battery") == (True, None)
    assert passwords.verify_password(stored, "correct horse batterY") == (False, None)


def test_unknown_user_still_runs_one_full_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = passwords._HASHER

    class Spy:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            calls.append(stored)
            return real.verify(stored, password)

        def check_needs_rehash(self, stored: str) -> bool:
            return real.check_needs_rehash(stored)

    monkeypatch.setattr(passwords, "_HASHER", Spy())
    assert passwords.verify_password(None, "whatever it is") == (False, None)
    # Verified against a real argon2id hash with the default parameters, so it costs what a real one does.
    assert len(calls) == 1 and calls[0].startswith("$argon2id$") and not real.check_needs_rehash(calls[0])


def test_garbage_stored_hash_is_a_mismatch_not_a_crash() -> None:
    assert passwords.verify_password("not-a-hash", "correct horse battery") == (False, None)


def test_weak_parameters_are_upgraded_on_a_successful_verify() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("correct horse battery")
    ok, new_hash = passwords.verify_password(weak, "correct horse battery")
    assert ok and new_hash is not None and new_hash != weak
    assert passwords.verify_password(new_hash, "correct horse battery") == (True, None)
    assert passwords.verify_password(weak, "wrong password!!") == (False, None)


@pytest.mark.parametrize("password", ["", "short", "x" * 11, "y" * (passwords.MAX_LENGTH + 1)])
def test_new_password_rules_refuse(password: str) -> None:
    with pytest.raises(passwords.WeakPassword):
        passwords.check_new_password(password)


def test_new_password_rules_accept_twelve() -> None:
    assert passwords.check_new_password("x" * 12) == "x" * 12


@pytest.mark.parametrize(("given", "read"), [
    ("secret-secret\n", "secret-secret"),
    ("secret-secret\r\n", "secret-secret"),
    ("secret-secret\n\n", "secret-secret\n"),  # one trailing newline only
    ("secret-secret", "secret-secret"),
    (" spaces kept \n", " spaces kept "),
])
def test_password_from_stdin_strips_one_trailing_newline(given: str, read: str) -> None:
    assert read_password(io.StringIO(given)) == read
