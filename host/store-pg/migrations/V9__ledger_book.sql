-- One booking of the virtual bank in one statement (ADR 0030, "One
-- transfer, exactly once"): the checks and writes that `book` made as
-- about fifteen statements, each a round trip while the transfer held its
-- accounts' locks, run in the server. The caller still queues on the
-- accounts' advisory locks and runs this in a SERIALIZABLE transaction,
-- retried on a conflict; the rules (which refusal, in which order) are the
-- ones those statements applied.
--
-- outcome: 'duplicate' (the id was consumed before: nothing written),
-- 'refused' (answer is the refusal recorded under the id) or 'booked'
-- (transfer_id, and what is left of each usage limit, in order).
CREATE FUNCTION ledger_book(
    p_institution   text,
    p_bank_tran_id  text,
    p_business_date text,
    p_kind          text,
    p_from          text,
    p_to            text,
    p_amount        bigint,
    p_usage_keys    text[],
    p_usage_limits  bigint[],
    p_usage_refusals text[],
    p_no_account    text,
    p_insufficient  text,
    p_receipt       text,
    p_dtime         text,
    p_tran_type     text,
    p_wd_print      text,
    p_dps_print     text,
    p_branch        text,
    OUT outcome     text,
    OUT transfer_id bigint,
    OUT remaining   bigint[],
    OUT answer      text
) LANGUAGE plpgsql AS $$
DECLARE
    d         date := to_date(p_business_date, 'YYYYMMDD');
    funds     bigint;
    used      bigint;
    counters  bigint[] := '{}';
    n         int := coalesce(array_length(p_usage_keys, 1), 0);
    wd_after  bigint;
    dps_after bigint;
BEGIN
    remaining := '{}';
    PERFORM 1 FROM ledger_tran_ids
        WHERE institution = p_institution AND bank_tran_id = p_bank_tran_id
          AND business_date = d;
    IF FOUND THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    SELECT balance + overdraft_limit INTO funds FROM ledger_accounts WHERE id = p_from;
    IF NOT FOUND THEN
        answer := p_no_account;
    ELSE
        PERFORM 1 FROM ledger_accounts WHERE id = p_to;
        IF NOT FOUND THEN
            answer := p_no_account;
        END IF;
    END IF;
    IF answer IS NULL THEN
        FOR i IN 1 .. n LOOP
            SELECT u.used INTO used FROM ledger_usage u WHERE u.key = p_usage_keys[i];
            used := coalesce(used, 0);
            IF used + p_amount > p_usage_limits[i] THEN
                answer := p_usage_refusals[i];
                EXIT;
            END IF;
            counters := counters || (used + p_amount);
        END LOOP;
    END IF;
    IF answer IS NULL AND funds < p_amount THEN
        answer := p_insufficient;
    END IF;
    IF answer IS NOT NULL THEN
        INSERT INTO ledger_tran_ids (institution, bank_tran_id, business_date, kind, amount,
                                     transfer_id, answer, remaining)
            VALUES (p_institution, p_bank_tran_id, d, p_kind, p_amount, NULL,
                    answer::jsonb, '{}');
        outcome := 'refused';
        RETURN;
    END IF;
    UPDATE ledger_accounts SET balance = balance - p_amount, last_tran_date = p_business_date
        WHERE id = p_from RETURNING balance INTO wd_after;
    UPDATE ledger_accounts SET balance = balance + p_amount, last_tran_date = p_business_date
        WHERE id = p_to RETURNING balance INTO dps_after;
    FOR i IN 1 .. n LOOP
        INSERT INTO ledger_usage (key, used) VALUES (p_usage_keys[i], counters[i])
            ON CONFLICT (key) DO UPDATE SET used = EXCLUDED.used;
        remaining := remaining || (p_usage_limits[i] - counters[i]);
    END LOOP;
    INSERT INTO ledger_transfers (institution, bank_tran_id, business_date, from_account,
                                  to_account, amount, at)
        VALUES (p_institution, p_bank_tran_id, d, p_from, p_to, p_amount, now())
        RETURNING id INTO transfer_id;
    INSERT INTO ledger_postings (transfer_id, account, amount, after_balance, dtime, tran_type,
                                 print_content, branch)
        VALUES (transfer_id, p_from, -p_amount, wd_after, p_dtime, p_tran_type, p_wd_print,
                p_branch),
               (transfer_id, p_to, p_amount, dps_after, p_dtime, p_tran_type, p_dps_print,
                p_branch);
    INSERT INTO ledger_tran_ids (institution, bank_tran_id, business_date, kind, amount,
                                 transfer_id, answer, remaining)
        VALUES (p_institution, p_bank_tran_id, d, p_kind, p_amount, transfer_id,
                p_receipt::jsonb, remaining);
    outcome := 'booked';
END
$$;
