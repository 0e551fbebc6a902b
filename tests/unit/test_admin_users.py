"""Email and role rules, the audit event's shape, and session TTL configuration: no database."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from periodya.admin import sessions, users
from periodya.errors import ConfigError
from periodya.event_registry import REGISTRY


@pytest.mark.parametrize(("given", "stored"), [
    ("A@B.C", "a@b.c"), ("  Ops.Admin@Example.COM ", "ops.admin@example.com"), ("a@b.c", "a@b.c")])
def test_email_is_stored_lower_cased(given: str, stored: str) -> None:
    assert users.check_email(given) == stored


@pytest.mark.parametrize("bad", ["", "no-at-sign", "two@@ats", "sp ace@x.y", "@x.y", "a@", "a" * 250 + "@x.yz"])
def test_unusable_email_is_refused(bad: str) -> None:
    with pytest.raises(users.InvalidAdminUser):
        users.check_email(bad)


def test_roles_are_validated_and_deduplicated() -> None:
    assert users.check_roles(["platform_admin", "viewer", "platform_admin"]) == ("platform_admin", "viewer")
    with pytest.raises(users.InvalidAdminUser):
        users.check_roles(["Platform Admin"])


def test_admin_user_created_is_registered_and_carries_no_secret() -> None:
    event = users.AdminUserCreated(user_id="usr_1", email="a@b.c", roles=("platform_admin",))
    new = REGISTRY.to_new(event, {"actor": "cli:test"})
    assert new.type == "AdminUserCreated"
    assert new.data == {"userId": "usr_1", "email": "a@b.c", "roles": ["platform_admin"]}
    assert REGISTRY.model_for("AdminUserCreated") is users.AdminUserCreated


def test_only_an_enabled_platform_admin_is_one() -> None:
    assert users.AdminUser("u", "a@b.c", "h", ("platform_admin",), False).is_platform_admin
    assert not users.AdminUser("u", "a@b.c", "h", ("platform_admin",), True).is_platform_admin
    assert not users.AdminUser("u", "a@b.c", "h", ("viewer",), False).is_platform_admin


def test_session_ttl_defaults_to_twelve_hours_and_is_configurable() -> None:
    assert sessions.session_ttl_from_env({}) == timedelta(hours=12)
    assert sessions.session_ttl_from_env({sessions.TTL_ENV: "30"}) == timedelta(minutes=30)
    for bad in ("soon", "0", "-5", "99999999"):
        with pytest.raises(ConfigError):
            sessions.session_ttl_from_env({sessions.TTL_ENV: bad})


def test_token_hash_is_sha256_of_the_token() -> None:
    assert sessions.token_hash("abc") == hashlib.sha256(b"abc").digest()


@pytest.mark.parametrize("ref", ["usr_" + "a" * 32, "Bob@Example.com"])
def test_a_user_is_named_by_id_or_email(ref: str) -> None:
    from periodya.admin import manage

    column, value = manage.check_user_ref(ref)
    assert (column, value) == (("user_id", ref) if ref.startswith("usr_") else ("email", "bob@example.com"))


@pytest.mark.parametrize("bad", ["usr_1", "nobody", "a\x00b@x.y", "\ud800@x.y", ""])
def test_a_malformed_user_reference_is_refused(bad: str) -> None:
    from periodya.admin import manage

    with pytest.raises(users.InvalidAdminUser):
        manage.check_user_ref(bad)


def test_the_user_management_events_are_registered_and_carry_no_password() -> None:
    for model in (users.AdminUserDisabled, users.AdminUserEnabled, users.AdminUserRoleChanged,
                  users.AdminPasswordReset, users.LoginThrottleUnlocked):
        assert REGISTRY.model_for(model.event_type) is model
        assert not {"password", "password_hash"} & set(model.model_fields)
    reset = REGISTRY.to_new(users.AdminPasswordReset(user_id="usr_1", email="a@b.c", generated=True,
                                                     sessions_revoked=2), {"actor": "admin:x", "reason": "r"})
    assert reset.data == {"userId": "usr_1", "email": "a@b.c", "generated": True, "sessionsRevoked": 2}


def test_a_generated_password_meets_the_rules() -> None:
    from periodya.admin import manage
    from periodya.admin.passwords import check_new_password

    first, second = manage.generate_password(), manage.generate_password()
    assert len(first) == manage.GENERATED_LENGTH and first != second and check_new_password(first) == first
