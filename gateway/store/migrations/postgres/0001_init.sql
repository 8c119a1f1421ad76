-- aortagw store schema v1 (PostgreSQL).

CREATE TABLE enrolments (
    id              TEXT PRIMARY KEY,
    issuer          TEXT NOT NULL,
    ura             TEXT NOT NULL,
    bsn             TEXT NOT NULL,
    signer_uzi      TEXT NOT NULL,
    issue_instant   TIMESTAMPTZ NOT NULL,
    not_before      TIMESTAMPTZ NOT NULL,
    not_on_or_after TIMESTAMPTZ NOT NULL,
    cert_not_after  TIMESTAMPTZ NOT NULL,
    raw             BYTEA NOT NULL,
    raw_sha256      BYTEA NOT NULL,
    registered_at   TIMESTAMPTZ NOT NULL,
    registered_by   TEXT NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_by      TEXT,
    revoke_reason   TEXT
);
CREATE INDEX enrolments_lookup ON enrolments (ura, bsn, not_on_or_after);

CREATE TABLE mandates (
    id              TEXT PRIMARY KEY,
    issuer          TEXT NOT NULL,
    ura             TEXT NOT NULL,
    giver_uzi       TEXT NOT NULL,
    giver_role      TEXT NOT NULL,
    application_id  TEXT NOT NULL,
    context         TEXT NOT NULL,
    issue_instant   TIMESTAMPTZ NOT NULL,
    not_before      TIMESTAMPTZ NOT NULL,
    not_on_or_after TIMESTAMPTZ NOT NULL,
    cert_not_after  TIMESTAMPTZ NOT NULL,
    valid_until     TIMESTAMPTZ NOT NULL,
    raw             BYTEA NOT NULL,
    raw_sha256      BYTEA NOT NULL,
    registered_at   TIMESTAMPTZ NOT NULL,
    registered_by   TEXT NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_by      TEXT,
    revoke_reason   TEXT
);
CREATE INDEX mandates_lookup ON mandates (ura, giver_uzi, context, application_id);
CREATE INDEX mandates_giver ON mandates (giver_uzi);

CREATE TABLE mandate_actors (
    mandate_id TEXT NOT NULL REFERENCES mandates (id) ON DELETE CASCADE,
    actor      TEXT NOT NULL,
    PRIMARY KEY (mandate_id, actor)
);
CREATE INDEX mandate_actors_actor ON mandate_actors (actor);

CREATE TABLE blocked_actors (
    uzi        TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    blocked_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE replay (
    issuer TEXT NOT NULL,
    id     TEXT NOT NULL,
    until  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (issuer, id)
);
CREATE INDEX replay_until ON replay (until);

CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  BIGINT NOT NULL,
    last_hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    version     INTEGER NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    kind        TEXT NOT NULL,
    giver       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    bsn         TEXT NOT NULL,
    interaction TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    token_ids   TEXT NOT NULL,
    trigger_id  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    details     TEXT NOT NULL,   -- TEXT, not JSONB: the hash covers these exact bytes
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL
);
CREATE INDEX audit_bsn ON audit_log (bsn, at);
CREATE FUNCTION aortagw_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION aortagw_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION aortagw_audit_append_only();

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    state           TEXT NOT NULL,
    run_at          TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    claim_token     TEXT,
    claimed_by      TEXT,
    lease_until     TIMESTAMPTZ,
    attempt_id      TEXT,
    result          BYTEA,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, run_at);

CREATE TABLE job_attempts (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    attempt_id  TEXT NOT NULL UNIQUE,
    worker      TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    outcome     TEXT NOT NULL DEFAULT 'sending',
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, attempt)
);
