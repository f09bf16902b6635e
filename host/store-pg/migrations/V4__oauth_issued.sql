-- What the authorization server issued, shared by every node, version 4
-- (docs/adr/0029-postgresql-store-and-multi-node.md, "Apps, developers and
-- grants on the cluster").

-- One row per issue: a client-credentials token (user_seq_no ''), or an
-- access token and its refresh token of one family. Unlink revokes every
-- row of a (client, user); a replayed code or refresh token the rows of
-- its family. (oauth_grants keeps one row per (client, user) and cannot
-- hold several families; it stays unused.)
CREATE TABLE oauth_issued (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id      text   NOT NULL REFERENCES oauth_clients (client_id),
    user_seq_no    text   NOT NULL,
    revocation_ids text[] NOT NULL,
    refresh_hash   text,
    family         text   REFERENCES refresh_families (family)
);
CREATE INDEX oauth_issued_by_grant ON oauth_issued (client_id, user_seq_no);
