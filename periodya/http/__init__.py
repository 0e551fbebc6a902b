"""aiohttp application: routes, auth, problem+json errors. Views parse, call a handler, serialise."""
