-- The virtual bank's money on the cluster, version 2
-- (docs/adr/0030-ledger-and-accounts-on-postgresql.md): what the embedded
-- bank keeps per account, per posting and per bank_tran_id, so that every
-- node answers a transfer, a resend and a transfer-result the same way.

-- An account may go below zero down to its overdraft line (a 마이너스 통장).
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_balance_check;
ALTER TABLE ledger_accounts
    ADD COLUMN overdraft_limit bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    ADD COLUMN last_tran_date  text CHECK (last_tran_date ~ '^[0-9]{8}$'),
    ADD CONSTRAINT ledger_accounts_within_overdraft CHECK (balance >= -overdraft_limit);

-- What a statement line shows. Nullable: transfers booked through the
-- plain `Cluster::transfer` (V1) carry none of it.
ALTER TABLE ledger_postings
    ADD COLUMN after_balance bigint,
    ADD COLUMN dtime         text CHECK (dtime ~ '^[0-9]{14}$'),
    ADD COLUMN tran_type     text,
    ADD COLUMN print_content text,
    ADD COLUMN branch        text;
CREATE INDEX ledger_postings_by_account ON ledger_postings (account, transfer_id);

-- Every bank_tran_id the bank consumed, per institution and business date:
-- transfers (booked or refused, with the answer given, which a resend or a
-- transfer-result gets back) and inquiries (a repeat the same day is
-- A0326 on every node).
CREATE TABLE ledger_tran_ids (
    institution   text   NOT NULL,
    bank_tran_id  text   NOT NULL CHECK (bank_tran_id <> ''),
    business_date date   NOT NULL,
    kind          text   NOT NULL CHECK (kind IN ('inquiry', 'withdraw', 'deposit')),
    amount        bigint CHECK (amount > 0),
    transfer_id   bigint REFERENCES ledger_transfers (id),
    -- The receipt of a booked transfer, or the refusal of a refused one.
    answer        jsonb,
    -- What is left of each usage limit after a booked transfer.
    remaining     bigint[],
    PRIMARY KEY (institution, bank_tran_id, business_date),
    CHECK ((kind = 'inquiry') = (answer IS NULL AND amount IS NULL)),
    CHECK (transfer_id IS NULL OR kind <> 'inquiry')
);

-- Money moved per limit period (the user's day, the institution's day and
-- month): a transfer adds to each and is refused when one would pass its
-- ceiling.
CREATE TABLE ledger_usage (
    key  text   PRIMARY KEY,
    used bigint NOT NULL CHECK (used >= 0)
);
