-- Plugins' variables set through the admin API, version 7
-- (docs/adr/0027-outbound-http-and-variables.md, "Variables on a cluster").
-- A value is stored as the node sealed it (ChaCha20-Poly1305 under the
-- cluster's shared `variables.key`, bound to its API and variable name):
-- 12 bytes of nonce, then the ciphertext and its 16-byte tag. Never in
-- clear. Every change bumps `config_version` in the same transaction, with
-- its audit entry; nodes read the values with the snapshot and load the
-- API's serving versions with them.
--
-- No foreign key to `apis`: an API not registered yet may get its values
-- first, for its first load.
CREATE TABLE api_variables (
    api        text        NOT NULL CHECK (api ~ '^[a-z0-9][a-z0-9-]{0,63}$'),
    variable   text        NOT NULL CHECK (variable ~ '^[a-z_][a-z0-9_]{0,63}$'),
    -- Nonce and tag at least; a value is at most 16 KiB (with room).
    sealed     bytea       NOT NULL CHECK (octet_length(sealed) BETWEEN 28 AND 65536),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (api, variable)
);
