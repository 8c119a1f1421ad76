-- aortagw store schema v1 (SQLite). Times are INTEGER unix microseconds (UTC).

CREATE TABLE enrolments (
    id              TEXT PRIMARY KEY,          -- SAML Assertion ID
    issuer          TEXT NOT NULL,
    ura             TEXT NOT NULL,
    bsn             TEXT NOT NULL,
    signer_uzi      TEXT NOT NULL,
    issue_instant   INTEGER NOT NULL,
    not_before      INTEGER NOT NULL,
    not_on_or_after INTEGER NOT NULL,
    cert_not_after  INTEGER NOT NULL,
    raw             BLOB NOT NULL,             -- the signed bytes, never re-serialised
    raw_sha256      BLOB NOT NULL,
    registered_at   INTEGER NOT NULL,
    registered_by   TEXT NOT NULL,
    revoked_at      INTEGER,
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
    context         TEXT NOT NULL,             -- autorisatieregel/context
    issue_instant   INTEGER NOT NULL,
    not_before      INTEGER NOT NULL,
    not_on_or_after INTEGER NOT NULL,
    cert_not_after  INTEGER NOT NULL,          -- NotAfter of the signing card certificate
    valid_until     INTEGER NOT NULL,          -- min(not_on_or_after, cert_not_after)
    raw             BLOB NOT NULL,
    raw_sha256      BLOB NOT NULL,
    registered_at   INTEGER NOT NULL,
    registered_by   TEXT NOT NULL,
    revoked_at      INTEGER,
    revoked_by      TEXT,
    revoke_reason   TEXT
);
CREATE INDEX mandates_lookup ON mandates (ura, giver_uzi, context, application_id);
CREATE INDEX mandates_giver ON mandates (giver_uzi);

CREATE TABLE mandate_actors (
    mandate_id TEXT NOT NULL REFERENCES mandates (id) ON DELETE CASCADE,
    actor      TEXT NOT NULL,                  -- gemandateerde: UZI, UZI:role or application URN
    PRIMARY KEY (mandate_id, actor)
);
CREATE INDEX mandate_actors_actor ON mandate_actors (actor);

CREATE TABLE blocked_actors (
    uzi        TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    blocked_at INTEGER NOT NULL
);

CREATE TABLE replay (
    issuer TEXT NOT NULL,
    id     TEXT NOT NULL,
    until  INTEGER NOT NULL,
    PRIMARY KEY (issuer, id)
);
CREATE INDEX replay_until ON replay (until);

CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  INTEGER NOT NULL,
    last_hash BLOB NOT NULL
);
INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, zeroblob(32));

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    version     INTEGER NOT NULL,              -- canonical encoding version
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    giver       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    bsn         TEXT NOT NULL,
    interaction TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    token_ids   TEXT NOT NULL,                 -- JSON array of strings
    trigger_id  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    details     TEXT NOT NULL,                 -- compact JSON, hashed byte for byte
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
);
CREATE INDEX audit_bsn ON audit_log (bsn, at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    payload         BLOB NOT NULL,
    state           TEXT NOT NULL,             -- queued|claimed|sending|done|unknown|dead
    run_at          INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    claim_token     TEXT,
    claimed_by      TEXT,
    lease_until     INTEGER,
    attempt_id      TEXT,                      -- message id of the current/last send attempt
    result          BLOB,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (state, run_at);

CREATE TABLE job_attempts (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    attempt_id  TEXT NOT NULL UNIQUE,
    worker      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT NOT NULL DEFAULT 'sending',
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, attempt)
);
