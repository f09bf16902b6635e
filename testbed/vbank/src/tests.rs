//! Unit tests of the virtual bank through its Rust API and the backend trait.

use sfop_core::ledger::{
    BankCall, ConsentScope, DepositRequest, HistoryQuery, InoutFilter, Recipient, ResultQuery,
    SortOrder, TransferKind, WithdrawRequest, codes,
};
use sfop_core::{BankError, Claims};

use super::*;
use crate::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};

fn open() -> anyhow::Result<(tempfile::TempDir, VirtualBank)> {
    let dir = tempfile::tempdir()?;
    let bank = VirtualBank::open(&Store::open(dir.path())?)?;
    Ok((dir, bank))
}

fn hong() -> Claims {
    Claims {
        client_id: DEMO_CLIENT_ID.into(),
        client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
        user_seq_no: Some("1100000001".into()),
        scopes: vec!["login".into(), "inquiry".into(), "transfer".into()],
        fintech_use_nums: vec![],
    }
}

fn call(claims: &Claims) -> BankCall<'_> {
    BankCall {
        caller: Some(claims),
        now_millis: sfop_core::time::now_millis(),
        utc_offset_minutes: 540,
    }
}

fn tran_id(n: u32) -> String {
    format!("{DEMO_CLIENT_USE_CODE}U{n:09}")
}

fn rsp_code<T: std::fmt::Debug>(r: Result<T, BankError>) -> String {
    match r {
        Err(BankError::Refused(r)) => r.rsp_code,
        other => format!("{other:?}"),
    }
}

fn withdraw(num: &str, id: u32, amt: u64) -> WithdrawRequest {
    WithdrawRequest {
        bank_tran_id: tran_id(id),
        fintech_use_num: num.into(),
        tran_amt: amt,
        cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
        wd_print_content: "QR 결제".into(),
        dps_print_content: "홍길동".into(),
        req_client_name: "홍길동".into(),
        req_client_num: "HONG".into(),
        transfer_purpose: "TR".into(),
        recv_client_name: "데모핀테크".into(),
        recv_client_bank_code: "097".into(),
        recv_client_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
    }
}

#[test]
fn seeds_once_and_keeps_outages_across_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let bank = VirtualBank::open(&Store::open(dir.path())?)?;
        let banks = bank.banks()?;
        assert_eq!(banks.len(), SEED_BANKS.len());
        assert!(banks.windows(2).all(|w| w[0].code < w[1].code));
        assert!(banks.iter().all(|b| b.available));
        bank.set_available("097", false)?;
        assert_eq!(bank.audit()?, Ok(()));
    }
    let bank = VirtualBank::open(&Store::open(dir.path())?)?;
    let open_bank = bank.banks()?.into_iter().find(|b| b.code == "097");
    assert_eq!(open_bank.map(|b| b.available), Some(false));
    assert_eq!(
        bank.authenticate("hong", "hong1234")?.as_deref(),
        Some("1100000001")
    );
    assert_eq!(bank.authenticate("hong", "wrong")?, None);
    assert_eq!(bank.authenticate("nobody", "hong1234")?, None);
    Ok(())
}

/// An unknown login costs the same hash as a known login with a wrong
/// password (it is checked against a dummy hash with the same parameters),
/// so the time of the answer does not say whether a login exists: medians of
/// 50 sign-ins each, taken in turns, within 20 %.
#[test]
fn an_unknown_login_costs_what_a_wrong_password_costs() -> anyhow::Result<()> {
    let (_dir, bank) = open()?;
    // Warm up: the dummy hash is made on first use.
    assert_eq!(bank.authenticate("nobody", "guess")?, None);
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..50 {
        let started = std::time::Instant::now();
        assert_eq!(bank.authenticate("hong", &format!("guess{i}"))?, None);
        wrong.push(started.elapsed());
        let started = std::time::Instant::now();
        assert_eq!(bank.authenticate(&format!("nobody{i}"), "guess")?, None);
        unknown.push(started.elapsed());
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[25], unknown[25]);
    eprintln!("vbank sign-in medians of 50: wrong password {w:?}, unknown login {u:?}");
    assert!(
        u * 5 >= w * 4 && w * 5 >= u * 4,
        "wrong password {w:?} vs unknown login {u:?}: the time tells"
    );
    assert!(
        w > std::time::Duration::from_micros(500),
        "no hash was computed: {w:?}"
    );
    Ok(())
}

#[test]
fn unknown_bank_is_an_error() -> anyhow::Result<()> {
    let (_dir, bank) = open()?;
    assert!(matches!(
        bank.set_available("999", false),
        Err(Error::UnknownBank(code)) if code == "999"
    ));
    Ok(())
}

#[test]
fn register_reuses_fintech_numbers_and_unlink_withdraws_consent() -> anyhow::Result<()> {
    let (_dir, bank) = open()?;
    let now = sfop_core::time::now_millis();
    let accounts = bank.accounts_of("1100000001")?;
    assert_eq!(accounts.len(), 3);
    let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
    let scopes = ["inquiry".to_owned()];
    let first =
        bank.register_accounts("1100000001", "other-app", "M202300002", &ids, &scopes, now)?;
    let again =
        bank.register_accounts("1100000001", "other-app", "M202300002", &ids, &scopes, now)?;
    assert_eq!(first, again);
    assert!(first.iter().all(|n| n.len() == 24));
    // Another institution gets other numbers for the same accounts.
    let seeded = bank.fintech_use_nums("1100000001", DEMO_CLIENT_ID, now)?;
    assert!(seeded.iter().all(|n| !first.contains(n)));
    assert_eq!(
        bank.fintech_use_nums("1100000001", "other-app", now)?.len(),
        3
    );
    assert_eq!(bank.unlink("1100000001", "other-app")?, 3);
    assert!(
        bank.fintech_use_nums("1100000001", "other-app", now)?
            .is_empty()
    );
    // Someone else's account cannot be registered.
    let kim = bank.accounts_of("1100000002")?;
    assert!(matches!(
        bank.register_accounts(
            "1100000001",
            "x",
            "M202300002",
            &[kim[0].id.clone()],
            &scopes,
            now
        ),
        Err(Error::NotTheirs { .. })
    ));
    Ok(())
}

#[test]
fn withdraw_moves_money_once_and_is_retrievable() -> anyhow::Result<()> {
    let (_dir, bank) = open()?;
    let claims = hong();
    let accounts = bank.registered_accounts(&call(&claims), "1100000001", false)?;
    let main = accounts
        .iter()
        .find(|a| a.bank_code_std == "097")
        .map(|a| a.fintech_use_num.clone())
        .unwrap_or_default();
    let before = bank
        .balance(&call(&claims), &tran_id(1), &main)?
        .balance_amt;
    let receipt = bank.withdraw(&call(&claims), &withdraw(&main, 2, 10_000))?;
    assert_eq!(receipt.answer.bank_rsp_code, "000");
    assert_eq!(receipt.wd_limit_remain_amt, Some(5_000_000 - 10_000));
    assert_eq!(
        rsp_code(bank.withdraw(&call(&claims), &withdraw(&main, 2, 10_000))),
        codes::DUPLICATE_BANK_TRAN_ID
    );
    assert_eq!(
        rsp_code(bank.balance(&call(&claims), &tran_id(1), &main)),
        codes::DUPLICATE_BANK_TRAN_ID
    );
    let after = bank
        .balance(&call(&claims), &tran_id(3), &main)?
        .balance_amt;
    assert_eq!(after, before - 10_000);
    let date = receipt.answer.bank_tran_date.clone();
    let results = bank.transfer_result(
        &call(&claims),
        &[
            ResultQuery {
                kind: TransferKind::Withdraw,
                org_bank_tran_id: tran_id(2),
                org_bank_tran_date: date.clone(),
                org_tran_amt: 10_000,
            },
            ResultQuery {
                kind: TransferKind::Withdraw,
                org_bank_tran_id: tran_id(2),
                org_bank_tran_date: date,
                org_tran_amt: 9_999,
            },
        ],
    )?;
    assert_eq!(results[0].as_ref().ok(), Some(&receipt));
    assert_eq!(
        results[1]
            .as_ref()
            .err()
            .and_then(|r| r.bank.as_ref())
            .map(|b| b.bank_rsp_code.as_str()),
        Some("431")
    );
    assert_eq!(bank.audit()?, Ok(()));
    Ok(())
}

#[test]
fn consents_limits_and_funds_are_enforced() -> anyhow::Result<()> {
    let (_dir, bank) = open()?;
    let claims = hong();
    let accounts = bank.registered_accounts(&call(&claims), "1100000001", false)?;
    let by_bank = |code: &str| {
        accounts
            .iter()
            .find(|a| a.bank_code_std == code)
            .map(|a| a.fintech_use_num.clone())
            .unwrap_or_default()
    };
    let (main, savings, credit) = (by_bank("097"), by_bank("004"), by_bank("088"));
    // Savings: inquiry consent only.
    assert_eq!(
        rsp_code(bank.withdraw(&call(&claims), &withdraw(&savings, 10, 1_000))),
        codes::TRANSFER_CONSENT_MISSING
    );
    assert_eq!(
        rsp_code(bank.withdraw(&call(&claims), &withdraw(&main, 11, 2_000_001))),
        codes::USER_WD_PER_TRAN
    );
    // Overdraft line: balance -300,000, line 2,000,000.
    assert_eq!(
        rsp_code(bank.withdraw(&call(&claims), &withdraw(&credit, 12, 1_800_000))),
        codes::BANK_FAILURE
    );
    bank.withdraw(&call(&claims), &withdraw(&credit, 13, 1_700_000))?;
    let b = bank.balance(&call(&claims), &tran_id(14), &credit)?;
    assert_eq!((b.balance_amt, b.available_amt), (-2_000_000, 0));
    // Daily limit: 5,000,000, 1,700,000 used.
    bank.withdraw(&call(&claims), &withdraw(&main, 15, 2_000_000))?;
    assert_eq!(
        rsp_code(bank.withdraw(&call(&claims), &withdraw(&main, 16, 1_300_001))),
        codes::USER_WD_DAILY
    );
    // Another user's number.
    let mut kim = hong();
    kim.user_seq_no = Some("1100000002".into());
    assert_eq!(
        rsp_code(bank.balance(&call(&kim), &tran_id(17), &main)),
        codes::FINTECH_NUM_MISMATCH
    );
    // Outage.
    bank.set_available("097", false)?;
    assert_eq!(
        bank.balance(&call(&claims), &tran_id(18), &main).err(),
        Some(BankError::Timeout)
    );
    bank.set_available("097", true)?;
    // Expired consent.
    let mut late = call(&claims);
    late.now_millis += 400 * 86_400_000;
    assert_eq!(
        rsp_code(bank.balance(&late, &tran_id(19), &main)),
        codes::INQUIRY_CONSENT_EXPIRED
    );
    // Cancel the inquiry consent.
    bank.cancel_account(
        &call(&claims),
        &tran_id(20),
        &savings,
        ConsentScope::Inquiry,
    )?;
    assert_eq!(
        rsp_code(bank.balance(&call(&claims), &tran_id(21), &savings)),
        codes::INQUIRY_CONSENT_MISSING
    );
    let listed = bank.registered_accounts(&call(&claims), "1100000001", true)?;
    assert!(
        listed
            .iter()
            .any(|a| a.fintech_use_num == savings && a.cancelled)
    );
    assert_eq!(bank.audit()?, Ok(()));
    Ok(())
}

#[test]
fn history_pages_with_a_cursor_and_deposits_check_names() -> anyhow::Result<()> {
    let (_dir, bank) = open()?;
    let claims = hong();
    let accounts = bank.registered_accounts(&call(&claims), "1100000001", false)?;
    let main = accounts
        .iter()
        .find(|a| a.bank_code_std == "097")
        .map(|a| a.fintech_use_num.clone())
        .unwrap_or_default();
    let mut seen = Vec::new();
    let mut cursor = None;
    for (n, order) in (30..).zip([SortOrder::Descending; 4]) {
        let page = bank.transactions(
            &call(&claims),
            &HistoryQuery {
                bank_tran_id: tran_id(n),
                fintech_use_num: main.clone(),
                inquiry_type: InoutFilter::All,
                from_dtime: "20000101000000".into(),
                to_dtime: "29991231235959".into(),
                sort_order: order,
                cursor: cursor.clone(),
                page_size: 25,
            },
        )?;
        assert_eq!(page.total_record_cnt, 37);
        seen.extend(page.postings.iter().map(|p| p.after_balance_amt));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 37);
    let mut institution = hong();
    institution.user_seq_no = None;
    let deposit = |id: u32, name: &str| DepositRequest {
        bank_tran_id: tran_id(id),
        recipient: Recipient::Account(
            sfop_core::ledger::AccountRef {
                bank_code_std: "081".into(),
                account_num: "4400011112222".into(),
            },
            Some(name.into()),
        ),
        tran_amt: 5_000,
        cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
        wd_pass_phrase: "NONE".into(),
        wd_print_content: "환불".into(),
        print_content: "데모핀테크 환불".into(),
        req_client_name: "데모핀테크".into(),
        req_client_num: "DEMO".into(),
        transfer_purpose: "TR".into(),
    };
    let refused = bank.deposit(&call(&institution), &deposit(40, "홍길동"));
    assert!(matches!(
        &refused,
        Err(BankError::Refused(r)) if r.bank.as_ref().is_some_and(|b| b.bank_rsp_code == "815")
    ));
    bank.deposit(&call(&institution), &deposit(41, "김영희"))?;
    assert_eq!(bank.audit()?, Ok(()));
    Ok(())
}

#[test]
fn one_bank_tran_id_from_many_threads_moves_money_once() -> anyhow::Result<()> {
    let (_dir, bank) = open()?;
    let claims = hong();
    let main = bank
        .registered_accounts(&call(&claims), "1100000001", false)?
        .into_iter()
        .find(|a| a.bank_code_std == "097")
        .map(|a| a.fintech_use_num)
        .unwrap_or_default();
    let before = bank.balance_of("097/1101234567890")?;
    let outcomes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    rsp_code(
                        bank.withdraw(&call(&claims), &withdraw(&main, 900, 1_000))
                            .map(|_| ()),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| "panicked".into()))
            .collect()
    });
    let ok = outcomes.iter().filter(|c| c.starts_with("Ok")).count();
    assert_eq!(ok, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|c| c.starts_with("Ok") || c == codes::DUPLICATE_BANK_TRAN_ID)
    );
    assert_eq!(bank.balance_of("097/1101234567890")?, before - 1_000);
    assert_eq!(bank.audit()?, Ok(()));
    Ok(())
}

/// Through the async backend (what the runtime calls): 48 withdrawals at
/// once, each `bank_tran_id` sent three times, on two worker threads. Each
/// id moves money once, every answer waits for a flush, and the flushes are
/// shared (group commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_withdrawals_share_flushes_and_move_money_once() -> anyhow::Result<()> {
    use sfop_core::BankBackend;
    let (_dir, bank) = open()?;
    let claims = hong();
    let main = bank
        .registered_accounts(&call(&claims), "1100000001", false)?
        .into_iter()
        .find(|a| a.bank_code_std == "097")
        .map(|a| a.fintech_use_num)
        .unwrap_or_default();
    let before = bank.balance_of("097/1101234567890")?;
    let stats = bank.commit_stats();
    let tasks: Vec<_> = (0..48u32)
        .map(|i| {
            let (bank, claims, main) = (bank.clone(), claims.clone(), main.clone());
            tokio::spawn(async move {
                let request = withdraw(&main, 1_000 + i % 16, 100);
                rsp_code(
                    BankBackend::withdraw(&bank, &call(&claims), &request)
                        .await
                        .map(|_| ()),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await?);
    }
    let ok = outcomes.iter().filter(|c| c.starts_with("Ok")).count();
    assert_eq!(ok, 16, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|c| c.starts_with("Ok") || c == codes::DUPLICATE_BANK_TRAN_ID)
    );
    assert_eq!(bank.balance_of("097/1101234567890")?, before - 16 * 100);
    assert_eq!(bank.audit()?, Ok(()));
    let after = bank.commit_stats();
    assert_eq!(after.acknowledged - stats.acknowledged, 48);
    assert!(after.flushes - stats.flushes <= 48);
    Ok(())
}
