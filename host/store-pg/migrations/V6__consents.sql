-- The virtual bank's consents on the cluster, version 6
-- (docs/adr/0030-ledger-and-accounts-on-postgresql.md, "Consents on the
-- cluster"): the fintech numbers it issued and the accounts users
-- registered with each client, so that a consent given through one node's
-- consent page (or withdrawn through another's unlink) is the one every
-- node decides by.

-- The issuance counter of fintech numbers, cluster-wide: a number is the
-- institution's nine digits and this sequence's value (13 digits), so
-- numbers drawn by concurrent nodes never collide. Gaps are harmless.
CREATE SEQUENCE vbank_fintech_seq AS bigint MINVALUE 1 MAXVALUE 9999999999999 NO CYCLE;

-- A fintech number: one per (institution, user, account), never changed
-- nor deleted once issued.
CREATE TABLE vbank_fintech_nums (
    fintech_use_num text   PRIMARY KEY CHECK (fintech_use_num ~ '^1[0-9]{23}$'),
    seq             bigint NOT NULL UNIQUE CHECK (seq BETWEEN 1 AND 9999999999999),
    client_use_code text   NOT NULL CHECK (client_use_code ~ '^[A-Za-z][0-9]{9}$'),
    user_seq_no     text   NOT NULL CHECK (user_seq_no <> ''),
    account         text   NOT NULL REFERENCES ledger_accounts (id),
    UNIQUE (client_use_code, user_seq_no, account),
    -- Registrations name a number with its user and account (below).
    UNIQUE (fintech_use_num, user_seq_no, account),
    -- The number spells its institution and its sequence value.
    CHECK (substr(fintech_use_num, 2, 9) = substr(client_use_code, 2, 9)),
    CHECK (substr(fintech_use_num, 11, 13) = lpad(seq::text, 13, '0'))
);

-- An account a user registered with a client, and the consents given for
-- it: each scope (inquiry, transfer) is absent or has its agreed time (the
-- bank's local time, as answers show it), its expiry and whether it was
-- withdrawn. A registration is never deleted: an unlink withdraws.
CREATE TABLE vbank_registrations (
    user_seq_no           text        NOT NULL,
    client_id             text        NOT NULL
        CHECK (client_id <> '' AND strpos(client_id, '/') = 0),
    account               text        NOT NULL,
    fintech_use_num       text        NOT NULL,
    registered_dtime      text        NOT NULL CHECK (registered_dtime ~ '^[0-9]{14}$'),
    inquiry_agreed_dtime  text        CHECK (inquiry_agreed_dtime ~ '^[0-9]{14}$'),
    inquiry_expires_at    timestamptz,
    inquiry_withdrawn     boolean,
    transfer_agreed_dtime text        CHECK (transfer_agreed_dtime ~ '^[0-9]{14}$'),
    transfer_expires_at   timestamptz,
    transfer_withdrawn    boolean,
    PRIMARY KEY (user_seq_no, client_id, account),
    -- The number is the one issued for this user and account.
    FOREIGN KEY (fintech_use_num, user_seq_no, account)
        REFERENCES vbank_fintech_nums (fintech_use_num, user_seq_no, account),
    -- A consent is all of its three columns or none of them.
    CHECK ((inquiry_agreed_dtime IS NULL) = (inquiry_expires_at IS NULL)
       AND (inquiry_agreed_dtime IS NULL) = (inquiry_withdrawn IS NULL)),
    CHECK ((transfer_agreed_dtime IS NULL) = (transfer_expires_at IS NULL)
       AND (transfer_agreed_dtime IS NULL) = (transfer_withdrawn IS NULL))
);
-- A call names a fintech number: its registration with the caller's client.
CREATE INDEX vbank_registrations_by_number ON vbank_registrations (fintech_use_num, client_id);
