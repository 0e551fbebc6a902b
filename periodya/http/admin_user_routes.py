"""Admin user management over HTTP (`periodya ops users | user ...`, the console's Users page).

Under /api/admin/, so behind the admin session (auth.py): ops_viewer may GET the list, every change needs
platform_admin, and a console call authenticated by its cookie needs its CSRF token like any POST. The
logic, its one-transaction writes and its guard rails live in periodya/admin/manage.py and throttle.py;
every change is an event with the caller as actor and the required reason (Meta). A user is named in the
path by its user id (usr_...) or its email.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, StrictStr

from periodya.admin import manage, passwords, throttle, users
from periodya.errors import BadRequest
from periodya.handlers.unit_of_work import Meta
from periodya.http import schemas
from periodya.http.middleware import ACTOR, REQUEST_ID
from periodya.http.route_helpers import STORE, json
from periodya.logging import get_logger

routes = web.RouteTableDef()
log = get_logger("periodya.admin")
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,189}$"
"""What the API documents for an email (every match passes users.check_email; stored emails may be wider)."""
Email = Annotated[StrictStr, Field(min_length=3, max_length=users.MAX_EMAIL_LENGTH, pattern=EMAIL_PATTERN)]
Address = Annotated[StrictStr, Field(min_length=2, max_length=64, description="an IPv4 or IPv6 address")]


class ChangeBody(schemas.Body):
    reason: schemas.Reason


class RoleBody(schemas.Body):
    role: Literal["platform_admin", "ops_viewer"]
    reason: schemas.Reason


class ResetPasswordBody(schemas.Body):
    reason: schemas.Reason
    password: Annotated[StrictStr, Field(min_length=passwords.MIN_LENGTH, max_length=passwords.MAX_LENGTH)] | None \
        = Field(None, description="the new password; absent: a one-time password is generated and shown once")


class UnlockBody(schemas.Body):
    email: Email | None = None
    address: Address | None = Field(None, description="the client address as the throttle saw it (IPv4 or IPv6)")
    reason: schemas.Reason


def _reason(text: str) -> str:
    reason = text.strip()
    if not reason:
        raise BadRequest("reason must not be blank", [{"field": "reason", "message": "blank"}])
    return reason


def _meta(request: web.Request, reason: str) -> Meta:
    return Meta(actor=request.get(ACTOR, "anonymous"), request_id=request.get(REQUEST_ID), reason=reason)


def _caller_email(request: web.Request) -> str | None:
    """The email of the admin making the request (auth.py's actor is `admin:<email>`)."""
    actor: str = request.get(ACTOR, "")
    return actor.removeprefix("admin:") if actor.startswith("admin:") else None


async def _ref(request: web.Request) -> str:
    """The user id the path names: 400 if malformed, 404 if unknown, both before the body is read (as the
    payout commands resolve their payout first)."""
    return await manage.resolve_user_id(request.app[STORE].pool, request.match_info["user"])


def _no_query(request: web.Request) -> None:
    if request.query:
        name = next(iter(request.query)).replace("\x00", "")
        raise BadRequest(f"unknown query parameter {name!r}", [{"field": name, "message": "unknown parameter"}])


def _answer(change: manage.Change, action: str) -> web.Response:
    if change.changed:
        log.info("admin_user_changed", action=action, user_id=change.user["userId"], email=change.user["email"],
                 sessions_revoked=change.sessions_revoked)
    body: dict[str, Any] = {"user": change.user, "changed": change.changed,
                            "sessionsRevoked": change.sessions_revoked}
    if action == "reset-password":
        body["generatedPassword"] = change.generated_password
    return json(body)


@routes.get("/api/admin/users")
async def list_users(request: web.Request) -> web.Response:
    _no_query(request)
    return json({"users": await manage.list_users(request.app[STORE].pool)})


@routes.post("/api/admin/users/{user}/disable")
async def disable(request: web.Request) -> web.Response:
    return await _set_disabled(request, True)


@routes.post("/api/admin/users/{user}/enable")
async def enable(request: web.Request) -> web.Response:
    return await _set_disabled(request, False)


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    _no_query(request)
    ref = await _ref(request)
    body, _ = await schemas.parse(request, ChangeBody)
    change = await manage.set_disabled(request.app[STORE], ref, disabled, actor_email=_caller_email(request),
                                       meta=_meta(request, _reason(body.reason)))
    return _answer(change, "disable" if disabled else "enable")


@routes.post("/api/admin/users/{user}/role")
async def set_role(request: web.Request) -> web.Response:
    _no_query(request)
    ref = await _ref(request)
    body, _ = await schemas.parse(request, RoleBody)
    change = await manage.set_role(request.app[STORE], ref, body.role, actor_email=_caller_email(request),
                                   meta=_meta(request, _reason(body.reason)))
    return _answer(change, "role")


@routes.post("/api/admin/users/{user}/reset-password")
async def reset_password(request: web.Request) -> web.Response:
    _no_query(request)
    ref = await _ref(request)
    body, _ = await schemas.parse(request, ResetPasswordBody)
    change = await manage.reset_password(request.app[STORE], ref, body.password,
                                         meta=_meta(request, _reason(body.reason)))
    return _answer(change, "reset-password")


def _address(raw: str) -> str:
    """The canonical form the throttle stores (periodya.http.client_ip): IPv4-mapped IPv6 as IPv4."""
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        raise BadRequest("address must be an IPv4 or IPv6 address",
                         [{"field": "address", "message": "not an IP address"}]) from None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


@routes.post("/api/admin/login-throttle/unlock")
async def unlock(request: web.Request) -> web.Response:
    _no_query(request)
    body, _ = await schemas.parse(request, UnlockBody)
    if body.email is None and body.address is None:
        raise BadRequest("give an email, an address, or both", [{"field": "email", "message": "email or address"}])
    email = None if body.email is None else users.check_email(body.email)
    address = None if body.address is None else _address(body.address)
    cleared = await throttle.unlock(request.app[STORE], email, address, meta=_meta(request, _reason(body.reason)))
    log.info("login_throttle_unlocked", email=email, address=address, cleared=cleared)
    return json({"email": email, "address": address, "cleared": cleared})
