-- Periodya ledger schema. Plain SQL, idempotent: `periodya migrate` may run it any number of times.
-- Everything lives in the `periodya` schema. The projection tables after the @projections marker are
-- written with unqualified names so that replay can build them again in a scratch schema.

CREATE SCHEMA IF NOT EXISTS periodya;
SET search_path = periodya;

-- The event log ------------------------------------------------------------------------------------
-- seq:  global sequence, assigned at INSERT time (NOT commit time).
-- tx:   the writing transaction's id. Readers order by (tx, seq) and only read rows whose tx is below
--       the snapshot horizon pg_snapshot_xmin(pg_current_snapshot()), so an event whose transaction
--       commits late can never be skipped by a follower (see DESIGN.md, "The event store").
-- hash: sha256 chain along each stream, tamper evidence (see periodya/eventstore/hashing.py).
CREATE TABLE IF NOT EXISTS events (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id      text        NOT NULL CHECK (stream_id <> '' AND position(E'\n' IN stream_id) = 0),
    stream_version bigint      NOT NULL CHECK (stream_version >= 1),
    event_type     text        NOT NULL CHECK (event_type ~ '^[A-Za-z][A-Za-z0-9_.]*$'),
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX IF NOT EXISTS events_tx_seq ON events (tx, seq);
CREATE INDEX IF NOT EXISTS events_recorded_at ON events (recorded_at);

-- Append-only, enforced by the database itself.
CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'PE001';
END $$;
CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- hash = sha256(prev_hash || canonical bytes); the canonical bytes are documented in hashing.py and
-- recomputed there by `verify`. Kept in one SQL function so append and verify cannot drift apart.
-- STABLE, not IMMUTABLE: extract(epoch FROM timestamptz) is only stable, and a correctly labelled
-- SQL function can be inlined by the planner.
CREATE OR REPLACE FUNCTION event_hash(p_prev bytea, p_stream text, p_version bigint, p_type text,
                                      p_recorded_at timestamptz, p_data text, p_metadata text)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT sha256(p_prev || convert_to(
        p_stream || E'\n' || p_version::text || E'\n' || p_type || E'\n'
        || (extract(epoch FROM p_recorded_at) * 1000000)::bigint::text || E'\n'
        || p_data || E'\n' || p_metadata, 'UTF8'))
$$;

-- Take transaction-scoped advisory locks on every key, in ascending order (a stable order, so two
-- transactions locking overlapping sets cannot deadlock). Advisory locks assign no transaction id.
CREATE OR REPLACE FUNCTION lock_keys(p_keys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    FOREACH k IN ARRAY (SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}') FROM unnest(p_keys) x) LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END $$;

-- Append events to one or more streams atomically, in ONE round trip.
--   p_lock_keys: advisory-lock keys of every stream AND every other resource (ledger accounts) the
--                calling transaction will write, SORTED ASCENDING AND DISTINCT (EventStore.append
--                does this). They are all taken BEFORE the first write: a transaction gets its xid at
--                its first write, so taking locks first makes any two transactions sharing a key get
--                their xids in commit order ("lock before you write").
--   p_streams / p_expected: one entry per stream; expected -1 = any, 0 = stream must not exist,
--                n = the stream's current version must be exactly n.
--   p_ev_stream (1-based index into p_streams), p_types, p_data, p_metadata: one entry per event,
--                data and metadata as JSON text; the hash covers their jsonb text form (hashing.py).
-- A version mismatch raises SQLSTATE PE409 with DETAIL 'stream|expected|actual' and writes nothing.
-- Returns one row per event, in append order (= ascending seq: the rows are inserted in that order).
--
-- PL/pgSQL, not one SQL statement: each statement here reads with a fresh snapshot, so the head
-- lookup after the lock wait sees a writer that committed while this one waited. A single statement
-- would read with the snapshot taken before it waited, miss that writer's events, and fail on the
-- UNIQUE backstop (or chain from a stale hash) instead of appending after them.
-- Cost: every call is usually its own transaction, and PL/pgSQL prepares each expression anew in
-- every transaction, so this keeps statements and per-event assignments few: the heads are read
-- per stream, the hash chain is the only per-event loop, and the INSERT returns its rows directly.
CREATE OR REPLACE FUNCTION append_events(
    p_lock_keys bigint[], p_streams text[], p_expected bigint[],
    p_ev_stream int[], p_types text[], p_data text[], p_metadata text[])
RETURNS TABLE (seq bigint, tx bigint, stream_id text, stream_version bigint, recorded_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i int;
    k bigint;
    s int;
    v_version bigint;
    v_hash bytea;
    v_versions bigint[];
    v_hashes bytea[];
    ev_versions bigint[];
    ev_prev bytea[];
    ev_hash bytea[];
    ev_data jsonb[];
    ev_meta jsonb[];
BEGIN
    FOREACH k IN ARRAY p_lock_keys LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;

    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        SELECT e.stream_version, e.hash INTO v_version, v_hash
          FROM periodya.events e WHERE e.stream_id = p_streams[i]
         ORDER BY e.stream_version DESC LIMIT 1;
        IF NOT FOUND THEN
            v_version := 0;
            v_hash := '\x0000000000000000000000000000000000000000000000000000000000000000';
        END IF;
        IF p_expected[i] <> -1 AND p_expected[i] <> v_version THEN
            RAISE EXCEPTION 'wrong expected version for stream %', p_streams[i]
                USING ERRCODE = 'PE409', DETAIL = p_streams[i] || '|' || p_expected[i] || '|' || v_version;
        END IF;
        v_versions[i] := v_version;
        v_hashes[i] := v_hash;
    END LOOP;

    -- The chain: each event's hash covers the previous one of its stream, so this part is sequential.
    ev_data := p_data::jsonb[];
    ev_meta := p_metadata::jsonb[];
    FOR i IN 1 .. coalesce(array_length(p_types, 1), 0) LOOP
        s := p_ev_stream[i];
        v_versions[s] := v_versions[s] + 1;
        ev_versions[i] := v_versions[s];
        ev_prev[i] := v_hashes[s];
        v_hashes[s] := periodya.event_hash(v_hashes[s], p_streams[s], v_versions[s], p_types[i], now(),
                                           ev_data[i]::text, ev_meta[i]::text);
        ev_hash[i] := v_hashes[s];
    END LOOP;

    RETURN QUERY
        INSERT INTO periodya.events AS e (stream_id, stream_version, event_type, data, metadata, recorded_at,
                                          prev_hash, hash)
        SELECT p_streams[u.s], u.v, u.t, u.d, u.m, now(), u.p, u.h
          FROM unnest(p_ev_stream, ev_versions, p_types, ev_data, ev_meta, ev_prev, ev_hash)
               WITH ORDINALITY AS u(s, v, t, d, m, p, h, ord)
         ORDER BY u.ord
        RETURNING e.seq, e.tx::text::bigint, e.stream_id, e.stream_version, e.recorded_at;
END $$;

-- Group commit: several independent appends (EventStore.append calls without a connection) in ONE
-- transaction and ONE round trip. Each append keeps its own atomicity and its own conflict; only the
-- transaction (and its id) is shared (periodya/eventstore/group_commit.py).
--   p_lock_keys: the sorted, distinct union of every append's lock keys, all taken BEFORE any read or
--                write (the same order and the same "lock before you write" as append_events).
--   p_streams:   the distinct streams of the batch (their heads are read once, after the locks).
--   p_item_append / p_item_stream / p_item_expected: one entry per (append, stream), appends in
--                order and each append's entries contiguous: the append's 1-based number, the index
--                into p_streams and the expected version (-1 any, 0 no stream, n exact).
--   p_ev_item, p_types, p_data, p_metadata: one entry per event, grouped by item in item order.
-- The appends are walked IN ORDER against running heads, which include the earlier appends of the
-- batch: an append whose expected versions do not match is refused whole (one row with append_no,
-- stream_id, expected and actual; nothing of it is written) and the rest go on. Accepted events get
-- versions and chain hashes from the running heads and are written by ONE INSERT in append order
-- (ascending seq), returned as rows with append_no NULL, conflict rows first.
-- Anything else (bad data, the UNIQUE backstop, a timeout) fails the whole statement: nothing written.
CREATE OR REPLACE FUNCTION append_batch(
    p_lock_keys bigint[], p_streams text[], p_item_append int[], p_item_stream int[], p_item_expected bigint[],
    p_ev_item int[], p_types text[], p_data text[], p_metadata text[])
RETURNS TABLE (append_no int, seq bigint, tx bigint, stream_id text, stream_version bigint,
               recorded_at timestamptz, expected bigint, actual bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    k bigint;
    i int := 1;
    j int;
    e int := 1;
    a int;
    s int;
    ok boolean;
    n_items int := coalesce(array_length(p_item_append, 1), 0);
    n_events int := coalesce(array_length(p_types, 1), 0);
    n_conflicts int := 0;
    v_versions bigint[];
    v_hashes bytea[];
    c_append int[];
    c_stream text[];
    c_expected bigint[];
    c_actual bigint[];
    ev_versions bigint[];
    ev_prev bytea[];
    ev_hash bytea[];
    ev_data jsonb[];
    ev_meta jsonb[];
BEGIN
    FOREACH k IN ARRAY p_lock_keys LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;

    -- One statement after the locks (a fresh snapshot, see append_events): every stream's head.
    SELECT array_agg(coalesce(hd.v, 0) ORDER BY u.i),
           array_agg(coalesce(hd.hh, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                     ORDER BY u.i)
      INTO v_versions, v_hashes
      FROM unnest(p_streams) WITH ORDINALITY AS u(s, i)
      LEFT JOIN LATERAL (SELECT x.stream_version AS v, x.hash AS hh FROM periodya.events x
                          WHERE x.stream_id = u.s ORDER BY x.stream_version DESC LIMIT 1) hd ON true;

    ev_data := p_data::jsonb[];
    ev_meta := p_metadata::jsonb[];
    WHILE i <= n_items LOOP
        a := p_item_append[i];
        ok := true;
        j := i;
        WHILE j <= n_items AND p_item_append[j] = a LOOP
            s := p_item_stream[j];
            IF ok AND p_item_expected[j] <> -1 AND p_item_expected[j] <> v_versions[s] THEN
                ok := false;
                n_conflicts := n_conflicts + 1;
                c_append[n_conflicts] := a;
                c_stream[n_conflicts] := p_streams[s];
                c_expected[n_conflicts] := p_item_expected[j];
                c_actual[n_conflicts] := v_versions[s];
            END IF;
            j := j + 1;
        END LOOP;
        -- this append's events (items i .. j-1); every slot is assigned, NULL when refused
        WHILE e <= n_events AND p_ev_item[e] < j LOOP
            IF ok THEN
                s := p_item_stream[p_ev_item[e]];
                v_versions[s] := v_versions[s] + 1;
                ev_versions[e] := v_versions[s];
                ev_prev[e] := v_hashes[s];
                v_hashes[s] := periodya.event_hash(v_hashes[s], p_streams[s], v_versions[s], p_types[e], now(),
                                                   ev_data[e]::text, ev_meta[e]::text);
                ev_hash[e] := v_hashes[s];
            ELSE
                ev_versions[e] := NULL;
                ev_prev[e] := NULL;
                ev_hash[e] := NULL;
            END IF;
            e := e + 1;
        END LOOP;
        i := j;
    END LOOP;

    IF n_conflicts > 0 THEN
        RETURN QUERY SELECT u.a, NULL::bigint, NULL::bigint, u.s, NULL::bigint, NULL::timestamptz, u.x, u.y
                       FROM unnest(c_append, c_stream, c_expected, c_actual) AS u(a, s, x, y);
    END IF;
    RETURN QUERY
        INSERT INTO periodya.events AS ev (stream_id, stream_version, event_type, data, metadata, recorded_at,
                                           prev_hash, hash)
        SELECT p_streams[p_item_stream[u.it]], u.v, u.t, u.d, u.m, now(), u.p, u.h
          FROM unnest(p_ev_item, ev_versions, p_types, ev_data, ev_meta, ev_prev, ev_hash)
               WITH ORDINALITY AS u(it, v, t, d, m, p, h, ord)
         WHERE u.v IS NOT NULL
         ORDER BY u.ord
        RETURNING NULL::int, ev.seq, ev.tx::text::bigint, ev.stream_id, ev.stream_version, ev.recorded_at,
                  NULL::bigint, NULL::bigint;
END $$;

-- The database verifying its own log: the first broken link of each stream (a version gap, a
-- prev_hash that is not the previous event's hash, or content that no longer matches its hash).
-- The sentinel uses it; `periodya verify` and export checks recompute independently in Python.
CREATE OR REPLACE FUNCTION chain_breaks(p_streams text[] DEFAULT NULL)
RETURNS TABLE (stream_id text, stream_version bigint, seq bigint, reason text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (x.stream_id) x.stream_id, x.stream_version, x.seq, x.reason FROM (
        SELECT e.stream_id, e.stream_version, e.seq,
               CASE WHEN e.stream_version <> coalesce(lag(e.stream_version) OVER w, 0) + 1
                    THEN 'version gap: expected ' || (coalesce(lag(e.stream_version) OVER w, 0) + 1)
                         || ', found ' || e.stream_version
                    WHEN e.prev_hash <> coalesce(lag(e.hash) OVER w,
                         '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                    THEN 'prev_hash does not match the previous event''s hash'
                    WHEN e.hash <> periodya.event_hash(e.prev_hash, e.stream_id, e.stream_version, e.event_type,
                                                       e.recorded_at, e.data::text, e.metadata::text)
                    THEN 'content does not match its hash (event changed after it was written)'
               END AS reason
          FROM periodya.events e
         WHERE p_streams IS NULL OR e.stream_id = ANY (p_streams)
        WINDOW w AS (PARTITION BY e.stream_id ORDER BY e.stream_version)) x
     WHERE x.reason IS NOT NULL
     ORDER BY x.stream_id, x.stream_version
$$;

-- Checkpoints of catch-up followers (committed in the same transaction as the view they guard).
CREATE TABLE IF NOT EXISTS checkpoints (
    name       text PRIMARY KEY,
    tx         xid8 NOT NULL DEFAULT '0',
    seq        bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Which schema.sql versions were applied (sha256 of the file's text, written by `periodya migrate` in the
-- same transaction): GET /readyz is ready only when the running code's own schema.sql has been applied.
CREATE TABLE IF NOT EXISTS schema_migrations (
    digest     text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Webhooks refused for a bad or stale signature, counted per minute (one row per minute, upserted; rows
-- older than a day are deleted by the upsert itself), so health and the sentinel see them across every
-- serve process. A count, never an event: a stranger must not be able to grow the log (http/refusals.py).
CREATE TABLE IF NOT EXISTS webhook_refusals (
    minute      timestamptz PRIMARY KEY,
    refused     bigint      NOT NULL,
    last_reason text        NOT NULL
);

-- Admin users, sessions and login throttling (periodya/admin). NOT projections: sessions and throttle
-- rows are ephemeral state, not facts, so replay leaves them alone. Creating a user is ALSO appended to
-- the log (stream admin-user-<user_id>, AdminUserCreated, no hash) so it shows in the audit trail.
CREATE TABLE IF NOT EXISTS admin_users (
    user_id       text PRIMARY KEY,
    email         text        NOT NULL UNIQUE,  -- stored lower-cased
    password_hash text        NOT NULL,         -- argon2id (PHC string)
    roles         text[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled      boolean     NOT NULL DEFAULT false
);
-- token_hash = sha256(opaque token): the token itself is never stored. Verification is one lookup by
-- primary key; last_seen_at is written at most once a minute.
CREATE TABLE IF NOT EXISTS admin_sessions (
    token_hash   bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id      text        NOT NULL REFERENCES admin_users (user_id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS admin_sessions_user ON admin_sessions (user_id, expires_at);
-- One row per failed login (and per attempt in flight, deleted when it succeeds), keyed by the email
-- tried and the remote address; the throttle counts rows inside a sliding window. Here, not in memory,
-- so the limit holds across processes.
CREATE TABLE IF NOT EXISTS login_failures (
    attempt_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text        NOT NULL,
    remote_addr text        NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS login_failures_email ON login_failures (email, failed_at);
CREATE INDEX IF NOT EXISTS login_failures_remote ON login_failures (remote_addr, failed_at);
CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures (failed_at);

-- Every run of a periodic job (scheduler, run endpoint or CLI): health reports the latest per job.
CREATE TABLE IF NOT EXISTS job_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text NOT NULL,
    mode        text,
    trigger     text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    ok          boolean,
    summary     jsonb,
    error       text
);
CREATE INDEX IF NOT EXISTS job_runs_latest ON job_runs (job, started_at DESC);

-- Idempotency of platform commands: (scope, key) -> the first response. Not a projection (it
-- caches answers, not facts), so replay leaves it alone.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope         text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status        int  NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- @projections ------------------------------------------------------------------------------------
-- Every table below is a projection: rebuilt from the log by the apply functions in
-- periodya/projections, inline in the appending transaction and again by replay.

-- Ledger: one row per group, one per entry. Balances: credits minus debits per (account, currency).
CREATE TABLE IF NOT EXISTS ledger_groups (
    group_id    text PRIMARY KEY,
    kind        text NOT NULL,
    subject     text NOT NULL,
    seq         bigint NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_entries (
    group_id text   NOT NULL,
    line     int    NOT NULL,
    account  text   NOT NULL,
    currency text   NOT NULL,
    debit    bigint NOT NULL CHECK (debit >= 0),
    credit   bigint NOT NULL CHECK (credit >= 0),
    PRIMARY KEY (group_id, line)
);
CREATE INDEX IF NOT EXISTS ledger_entries_account ON ledger_entries (account, currency);
-- The admin read of one payout lists its ledger groups by subject (GET /api/admin/payouts/{id}).
CREATE INDEX IF NOT EXISTS ledger_groups_subject ON ledger_groups (subject);

-- no_overdraft is the database's backstop; commands check the balance first, under the account lock.
CREATE TABLE IF NOT EXISTS balances (
    account    text    NOT NULL,
    currency   text    NOT NULL,
    balance    bigint  NOT NULL,
    debits     bigint  NOT NULL,
    credits    bigint  NOT NULL,
    protected  boolean NOT NULL,
    last_seq   bigint  NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (account, currency),
    CONSTRAINT no_overdraft CHECK (NOT protected OR balance >= 0),
    CONSTRAINT balance_is_credits_minus_debits CHECK (balance = credits - debits)
);

CREATE TABLE IF NOT EXISTS escrows (
    escrow_id  text PRIMARY KEY,
    currency   text   NOT NULL,
    funded     bigint NOT NULL,
    released   bigint NOT NULL,
    refunded   bigint NOT NULL,
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS payouts (
    payout_id          text PRIMARY KEY,
    payee_id           text    NOT NULL,
    amount             bigint  NOT NULL,
    currency           text    NOT NULL,
    destination        text    NOT NULL,
    status             text    NOT NULL,
    provider_payout_id text,
    provider_status    text,
    ledger_finalized   boolean NOT NULL,
    funds_returned     boolean NOT NULL,
    quarantine_reason  text,
    attempts           int     NOT NULL,
    last_error         text,
    next_attempt_at    timestamptz,
    version            bigint  NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    status_changed_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS payouts_provider_id ON payouts (provider_payout_id);
CREATE INDEX IF NOT EXISTS payouts_status_changed ON payouts (status, status_changed_at);
CREATE INDEX IF NOT EXISTS payouts_payee ON payouts (payee_id, created_at);
-- The admin payout list, newest first, paged by (created_at, payout_id) (GET /api/admin/payouts).
CREATE INDEX IF NOT EXISTS payouts_created ON payouts (created_at, payout_id);

-- The payout outbox: one task per payout. PENDING -> SENDING -> SENT -> DONE, or FAILED.
CREATE TABLE IF NOT EXISTS outbox (
    payout_id       text PRIMARY KEY,
    status          text NOT NULL,
    attempts        int  NOT NULL,
    last_error      text,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at NULLS FIRST, created_at) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS outbox_sending ON outbox (updated_at) WHERE status = 'SENDING';

-- Provider webhooks as received (after signature verification) and whether the webhooks runner has
-- applied them. The runner's work list is `applied_seq IS NULL`, in the order they arrived.
CREATE TABLE IF NOT EXISTS provider_events (
    event_id           text PRIMARY KEY,
    type               text   NOT NULL,
    provider_payout_id text,
    payout_id          text,
    status             text,
    received_seq       bigint NOT NULL,
    received_at        timestamptz NOT NULL,
    applied_seq        bigint,
    outcome            text,
    amount             bigint,
    currency           text
);
CREATE INDEX IF NOT EXISTS provider_events_pending ON provider_events (received_seq) WHERE applied_seq IS NULL;
CREATE INDEX IF NOT EXISTS provider_events_pending_payout ON provider_events (payout_id, received_seq)
    WHERE applied_seq IS NULL;

-- Integrity alerts raised by the sentinel (and the runners), acknowledged and resolved by humans.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id    text PRIMARY KEY,
    code        text  NOT NULL,
    severity    text  NOT NULL,
    status      text  NOT NULL,
    subject     text  NOT NULL,
    details     jsonb NOT NULL,
    remedy      text  NOT NULL,
    raised_at   timestamptz NOT NULL,
    acked_at    timestamptz,
    acked_by    text,
    ack_note    text,
    resolved_at timestamptz,
    resolved_by text,
    resolve_note text,
    automatic   boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (code, severity) WHERE status <> 'RESOLVED';
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at DESC);
CREATE INDEX IF NOT EXISTS outbox_open_age ON outbox (created_at) WHERE status IN ('PENDING', 'SENDING');
CREATE INDEX IF NOT EXISTS payouts_paid_unfinalized ON payouts (updated_at)
    WHERE provider_status = 'paid' AND NOT ledger_finalized;
