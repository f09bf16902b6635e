-- sfop's cluster schema, version 1 (docs/adr/0029-postgresql-store-and-multi-node.md).
-- Applied by refinery at start; never edited once released: a change is a new
-- V<n>__*.sql file.

-- What a node serves changes only with this number. Every transaction that
-- alters it bumps the row (whose lock orders such transactions: versions
-- commit in the order they were taken) and NOTIFYs `sfop_config`.
CREATE TABLE config_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO config_version (id, version) VALUES (true, 0);

-- Components, content-addressed: the key is the SHA-256 of the bytes,
-- checked by the database itself.
CREATE TABLE component_blobs (
    sha256 text  PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    bytes  bytea NOT NULL CHECK (octet_length(bytes) > 0),
    CHECK (encode(sha256(bytes), 'hex') = sha256)
);

-- An API (package name) and how it is served.
CREATE TABLE apis (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,127}$'),
    live_version text,
    sunset       date,
    retired_at   timestamptz,
    CHECK (retired_at IS NULL OR live_version IS NOT NULL)
);

-- One uploaded version; its bytes never change (enforced by a trigger).
CREATE TABLE api_versions (
    api              text        NOT NULL REFERENCES apis (name),
    version          text        NOT NULL CHECK (version ~ '^[0-9]+\.[0-9]+\.[0-9]+'),
    component_sha256 text        NOT NULL REFERENCES component_blobs (sha256),
    manifest         text        NOT NULL,
    manifest_sha256  text        NOT NULL CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$'),
    cases            text,
    uploaded_at      timestamptz NOT NULL,
    uploaded_by      text        NOT NULL CHECK (uploaded_by <> ''),
    PRIMARY KEY (api, version)
);

CREATE FUNCTION api_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'api_versions are immutable: %@% cannot be changed or removed',
        OLD.api, OLD.version USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER api_versions_immutable BEFORE UPDATE OR DELETE ON api_versions
    FOR EACH ROW EXECUTE FUNCTION api_versions_immutable();

ALTER TABLE apis ADD FOREIGN KEY (name, live_version) REFERENCES api_versions (api, version)
    DEFERRABLE INITIALLY DEFERRED;

-- The latest testbed verdict of a version; a pass carries its attestation.
CREATE TABLE api_tests (
    api         text        NOT NULL,
    version     text        NOT NULL,
    passed      boolean     NOT NULL,
    at          timestamptz NOT NULL,
    report      jsonb       NOT NULL,
    report_html text        NOT NULL,
    attestation text,
    PRIMARY KEY (api, version),
    FOREIGN KEY (api, version) REFERENCES api_versions (api, version),
    CHECK (passed = (attestation IS NOT NULL))
);

-- At most one canary per API, never the live version itself.
CREATE TABLE canaries (
    api            text        PRIMARY KEY REFERENCES apis (name),
    version        text        NOT NULL,
    percent        smallint    NOT NULL CHECK (percent BETWEEN 0 AND 100),
    sticky         text        NOT NULL CHECK (sticky IN ('client', 'user', 'none')),
    max_error_rate double precision NOT NULL CHECK (max_error_rate BETWEEN 0 AND 1),
    min_requests   bigint      NOT NULL CHECK (min_requests >= 0),
    started_at     timestamptz NOT NULL,
    FOREIGN KEY (api, version) REFERENCES api_versions (api, version)
);

-- Earlier live versions, oldest first: rollback returns to the last.
CREATE TABLE previous_releases (
    api      text    NOT NULL REFERENCES apis (name),
    position integer NOT NULL CHECK (position >= 0),
    version  text    NOT NULL,
    PRIMARY KEY (api, position),
    UNIQUE (api, version),
    FOREIGN KEY (api, version) REFERENCES api_versions (api, version)
);

-- The hash-chained audit log. One writer at a time (an advisory lock taken
-- in the writing transaction), so `seq` has no gaps and `prev` is the hash
-- of `seq - 1`.
CREATE TABLE audit_log (
    seq     bigint      PRIMARY KEY CHECK (seq >= 1),
    at      timestamptz NOT NULL,
    actor   text        NOT NULL,
    action  text        NOT NULL,
    api     text        NOT NULL,
    version text,
    detail  text        NOT NULL,
    prev    text        NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
    hash    text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);

-- Revoked token blocks. `seq` comes from the `revocation_feed` row, whose
-- lock orders revokers: a node that has read up to N has seen every
-- revocation numbered N or lower.
CREATE TABLE revocation_feed (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint  NOT NULL CHECK (seq >= 0)
);
INSERT INTO revocation_feed (id, seq) VALUES (true, 0);

CREATE TABLE revocations (
    revocation_id text        PRIMARY KEY CHECK (revocation_id ~ '^[0-9a-f]+$'),
    seq           bigint      NOT NULL,
    revoked_at    timestamptz NOT NULL
);
CREATE INDEX revocations_by_seq ON revocations (seq);

-- OAuth clients (apps) and what they were given.
CREATE TABLE oauth_clients (
    client_id       text        PRIMARY KEY,
    name            text        NOT NULL CHECK (name <> ''),
    client_use_code text        NOT NULL UNIQUE,
    public          boolean     NOT NULL,
    secret_hash     text,
    salt            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    CHECK (public = (secret_hash IS NULL))
);

CREATE TABLE oauth_client_redirect_uris (
    client_id    text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    redirect_uri text NOT NULL,
    PRIMARY KEY (client_id, redirect_uri)
);

CREATE TABLE oauth_client_scopes (
    client_id text NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    scope     text NOT NULL,
    PRIMARY KEY (client_id, scope)
);

-- A token family: everything issued from one authorization, revoked
-- together when a code or refresh token is replayed.
CREATE TABLE refresh_families (
    family      text        PRIMARY KEY,
    client_id   text        NOT NULL REFERENCES oauth_clients (client_id),
    user_seq_no text        NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

-- Single-use authorization codes, stored by hash; a redeemed code stays
-- (with its family) so that a replay is recognised.
CREATE TABLE oauth_codes (
    code_hash      text        PRIMARY KEY,
    client_id      text        NOT NULL REFERENCES oauth_clients (client_id),
    redirect_uri   text        NOT NULL,
    user_seq_no    text        NOT NULL,
    scopes         text[]      NOT NULL,
    fintech_use_nums text[]    NOT NULL,
    code_challenge text,
    expires_at     timestamptz NOT NULL,
    redeemed_family text       REFERENCES refresh_families (family)
);

-- Refresh tokens by hash; rotation marks, never removes.
CREATE TABLE refresh_tokens (
    token_hash       text        PRIMARY KEY,
    family           text        NOT NULL REFERENCES refresh_families (family),
    scopes           text[]      NOT NULL,
    fintech_use_nums text[]      NOT NULL,
    expires_at       timestamptz NOT NULL,
    rotated          boolean     NOT NULL DEFAULT false
);

-- What was issued to a (client, user): unlink revokes it all.
CREATE TABLE oauth_grants (
    client_id      text   NOT NULL REFERENCES oauth_clients (client_id),
    user_seq_no    text   NOT NULL,
    revocation_ids text[] NOT NULL,
    family         text   REFERENCES refresh_families (family),
    PRIMARY KEY (client_id, user_seq_no)
);

-- Developer portal accounts and their apps.
CREATE TABLE developers (
    email      text        PRIMARY KEY CHECK (email LIKE '%_@_%'),
    password   text        NOT NULL CHECK (password LIKE 'pbkdf2-sha256$%' OR password LIKE 'argon2%'),
    created_at timestamptz NOT NULL
);

CREATE TABLE developer_apps (
    email     text NOT NULL REFERENCES developers (email) ON DELETE CASCADE,
    client_id text NOT NULL REFERENCES oauth_clients (client_id),
    PRIMARY KEY (email, client_id),
    UNIQUE (client_id)
);

-- Sandbox fault rules, per app or for all, in the order they apply.
CREATE TABLE sandbox_rules (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id text REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    operation text,
    bank_code text CHECK (bank_code ~ '^[0-9]{3}$'),
    rule      jsonb  NOT NULL,
    times     integer CHECK (times > 0)
);

-- Plugin-private key-value storage (the `kv` capability).
CREATE TABLE plugin_kv (
    namespace text  NOT NULL,
    key       text  NOT NULL CHECK (octet_length(key) <= 512),
    value     bytea NOT NULL CHECK (octet_length(value) <= 1048576),
    PRIMARY KEY (namespace, key)
);

-- The virtual bank's ledger. Money is integer won.
CREATE TABLE ledger_accounts (
    id          text   PRIMARY KEY,
    bank_code   text   NOT NULL CHECK (bank_code ~ '^[0-9]{3}$'),
    holder_name text   NOT NULL,
    balance     bigint NOT NULL CHECK (balance >= 0)
);

-- One transfer per (institution, bank_tran_id, business date): a resend is
-- a duplicate, answered with the original outcome.
CREATE TABLE ledger_transfers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    institution   text        NOT NULL,
    bank_tran_id  text        NOT NULL CHECK (bank_tran_id <> ''),
    business_date date        NOT NULL,
    from_account  text        NOT NULL REFERENCES ledger_accounts (id),
    to_account    text        NOT NULL REFERENCES ledger_accounts (id),
    amount        bigint      NOT NULL CHECK (amount > 0),
    at            timestamptz NOT NULL,
    CHECK (from_account <> to_account),
    UNIQUE (institution, bank_tran_id, business_date)
);

-- Double entry: each transfer's postings sum to zero.
CREATE TABLE ledger_postings (
    transfer_id bigint NOT NULL REFERENCES ledger_transfers (id),
    account     text   NOT NULL REFERENCES ledger_accounts (id),
    amount      bigint NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (transfer_id, account)
);

-- The audit log is append-only.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: entry % cannot be changed or removed',
        OLD.seq USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- The chain's head, beside the entries: a truncated log no longer ends
-- where its head says.
CREATE TABLE audit_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint  NOT NULL CHECK (seq >= 0),
    hash text    NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);
INSERT INTO audit_head (id, seq, hash)
    VALUES (true, 0, '0000000000000000000000000000000000000000000000000000000000000000');
