"""Platform administrators: users, password hashing, sessions, login throttling, /api/auth/*, and
`periodya admin create-user`. Kept free of imports here so that periodya.http.problems can import the
throttle error without pulling in the HTTP routes."""
