"""GET /docs: a small self-written page that renders the operations of /openapi.json. Its script and
style are files of this package (periodya/http/docs_assets), served at /docs/{asset}: no CDN and no
external request, so the page works on a closed network."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from periodya.domain.errors import NotFound

ASSETS = {"docs.js": "text/javascript", "docs.css": "text/css"}


def _read(name: str) -> bytes:
    return resources.files("periodya.http").joinpath("docs_assets", name).read_bytes()


async def get_docs(_request: web.Request) -> web.Response:
    return web.Response(body=_read("index.html"), content_type="text/html", charset="utf-8")


async def get_docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise NotFound(f"no docs asset {name!r}")
    return web.Response(body=_read(name), content_type=ASSETS[name], charset="utf-8")


def setup(app: web.Application) -> None:
    app.router.add_get("/docs", get_docs)
    app.router.add_get("/docs/{asset}", get_docs_asset)
