-- OAuth clients and developer accounts shared by every node, version 3
-- (docs/adr/0029-postgresql-store-and-multi-node.md, "Apps, developers and
-- grants on the cluster").

-- Several apps may belong to one institution (one client_use_code): the
-- code is not unique per client. The institution codes are their own rows,
-- claimed once (an operator may reserve one before its first app).
ALTER TABLE oauth_clients DROP CONSTRAINT oauth_clients_client_use_code_key;

CREATE TABLE institution_codes (
    code        text        PRIMARY KEY CHECK (code ~ '^M[0-9]{9}$'),
    reserved_at timestamptz NOT NULL
);
INSERT INTO institution_codes (code, reserved_at)
    SELECT DISTINCT client_use_code, now() FROM oauth_clients;
ALTER TABLE oauth_clients
    ADD FOREIGN KEY (client_use_code) REFERENCES institution_codes (code);
CREATE INDEX oauth_clients_by_code ON oauth_clients (client_use_code);
