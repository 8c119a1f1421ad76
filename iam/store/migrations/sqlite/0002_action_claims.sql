-- Leases on in-flight actions: the primary key on the action's idempotency
-- key lets one replica at a time apply it.
CREATE TABLE action_claims (action TEXT PRIMARY KEY, owner TEXT NOT NULL, until INTEGER NOT NULL);
