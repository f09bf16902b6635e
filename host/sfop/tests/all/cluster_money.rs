//! Issue 20, the money on a cluster (docs/adr/0030): the virtual bank's
//! ledger in the PostgreSQL every node shares. Acceptance 3: one
//! `bank_tran_id` sent 100 times at once, spread over three `sfop serve`
//! processes, is booked once; the other 99 are duplicates (`A0326`, ADR
//! 0021) and the balances sum to what they did, but for that transfer.
//!
//! `SFOP_TEST_PG_URL` names the test server (`cargo xtask ci` starts one
//! and sets it; `cargo xtask pg start` prints it); each test makes its own
//! database. Without it a test fails under CI and is skipped elsewhere.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sfop_core::BankBackend;
use sfop_core::Claims;
use sfop_core::ledger::{
    AccountRef, BankCall, BankError, RealNameQuery, ReceiveQuery, Recipient, ResultQuery,
    TransferKind, WithdrawRequest,
};
use sfop_store_pg::Cluster;
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};
use sfop_vbank::{ClusterBank, VirtualBank};

use crate::served::{Served, serve_command, serve_plugins};

const HONG_MAIN: &str = "097/1101234567890";
const SENDS: usize = 100;
/// Bound on one request: a hang fails the test.
const BOUND: Duration = Duration::from_secs(30);

/// A fresh database `sfop_t_<name>` on the test server, or `None` (skip)
/// when no server is configured outside CI.
pub async fn database(name: &str) -> Result<Option<String>> {
    let Ok(admin) = std::env::var("SFOP_TEST_PG_URL") else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci {
            bail!(
                "SFOP_TEST_PG_URL is not set: under CI the PostgreSQL tests must run \
                 (`cargo xtask ci` starts a server and sets it)"
            );
        }
        eprintln!(
            "skipped {name}: SFOP_TEST_PG_URL is not set (run `cargo xtask pg start` and \
             export what it prints)"
        );
        return Ok(None);
    };
    Ok(Some(
        sfop_store_pg::recreate_database(&admin, &format!("sfop_t_{name}"))
            .await
            .with_context(|| format!("a database for {name}"))?,
    ))
}

fn hong() -> Claims {
    Claims {
        client_id: DEMO_CLIENT_ID.into(),
        client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
        user_seq_no: Some("1100000001".into()),
        scopes: vec!["transfer".into(), "inquiry".into()],
        fintech_use_nums: vec![],
    }
}

fn call(claims: &Claims) -> BankCall<'_> {
    BankCall {
        caller: Some(claims),
        now_millis: sfop_core::time::now_millis(),
        utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
    }
}

/// The fintech number of Hong's main account (097) for the demo app, as
/// `bank`'s seed registered it.
fn hong_main_fin(bank: &ClusterBank) -> Result<String> {
    Ok(bank
        .local()
        .registered_accounts(&call(&hong()), "1100000001", false)?
        .into_iter()
        .find(|a| a.bank_code_std == "097")
        .context("hong's 097 account")?
        .fintech_use_num)
}

/// A withdrawal of `amount` won with `bank_tran_id` from the account
/// behind `fin` into the demo institution's contract account.
pub(crate) fn withdraw_request(bank_tran_id: &str, fin: &str, amount: u64) -> WithdrawRequest {
    WithdrawRequest {
        bank_tran_id: bank_tran_id.to_owned(),
        fintech_use_num: fin.to_owned(),
        tran_amt: amount,
        cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
        wd_print_content: "cluster".into(),
        dps_print_content: "홍길동".into(),
        req_client_name: "홍길동".into(),
        req_client_num: "HONG".into(),
        transfer_purpose: "TR".into(),
        recv_client_name: String::new(),
        recv_client_bank_code: String::new(),
        recv_client_account_num: String::new(),
    }
}

/// Three nodes' banks (own sled stores, one ledger) in this process: the
/// seeding race and the booking, without HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_banks_seed_once_and_book_one_bank_tran_id_once() -> Result<()> {
    let Some(url) = database("money_banks").await? else {
        return Ok(());
    };
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let mut opening = Vec::new();
    for dir in &dirs {
        let bank = VirtualBank::open(&sfop_store::Store::open(dir.path())?)?;
        let cluster = Cluster::connect(&url, 8).await?;
        opening.push(tokio::spawn(ClusterBank::open(bank, cluster)));
    }
    let mut banks = Vec::new();
    for open in opening {
        banks.push(open.await??);
    }
    let ledger = banks[0].cluster().clone();
    let capital = banks[0].local().capital()?;
    // Seeded once: the ledger holds one bank's accounts and its capital.
    assert_eq!(i128::from(ledger.total_balance().await?), capital);
    let hong_before = ledger
        .balance(HONG_MAIN)
        .await?
        .context("hong on the ledger")?;
    assert_eq!(hong_before, banks[0].local().balance_of(HONG_MAIN)?);

    let claims = hong();
    let fin = hong_main_fin(&banks[0])?;
    let id = format!("{DEMO_CLIENT_USE_CODE}U000000042");
    let request = withdraw_request(&id, &fin, 1_000);
    let sends: Vec<_> = (0..SENDS)
        .map(|i| {
            let (bank, request) = (banks[i % 3].clone(), request.clone());
            tokio::spawn(async move {
                let claims = hong();
                bank.withdraw(&call(&claims), &request).await
            })
        })
        .collect();
    let (mut booked, mut duplicates) = (Vec::new(), 0);
    for send in sends {
        match send.await? {
            Ok(receipt) => booked.push(receipt),
            Err(BankError::Refused(r)) if r.rsp_code == "A0326" => duplicates += 1,
            Err(e) => bail!("unexpected answer: {e}"),
        }
    }
    assert_eq!((booked.len(), duplicates), (1, SENDS - 1));
    assert_eq!(booked[0].answer.bank_rsp_code, "000");
    assert_eq!(ledger.postings_of(DEMO_CLIENT_USE_CODE, &id).await?, 2);
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(hong_before - 1_000));
    assert_eq!(i128::from(ledger.total_balance().await?), capital);

    // Every node reports the original, and a balance read on another node
    // sees the money gone.
    for bank in &banks {
        let results = bank
            .transfer_result(
                &call(&claims),
                &[ResultQuery {
                    kind: TransferKind::Withdraw,
                    org_bank_tran_id: id.clone(),
                    org_bank_tran_date: booked[0].answer.bank_tran_date.clone(),
                    org_tran_amt: 1_000,
                }],
            )
            .await?;
        assert_eq!(results.len(), 1);
        let receipt = results[0].as_ref().map_err(|r| anyhow::anyhow!("{r:?}"))?;
        assert_eq!(receipt.answer, booked[0].answer);
        assert_eq!(receipt.wd_limit_remain_amt, booked[0].wd_limit_remain_amt);
    }
    let balance = banks[2]
        .balance(
            &call(&claims),
            &format!("{DEMO_CLIENT_USE_CODE}U000000043"),
            &fin,
        )
        .await?;
    assert_eq!(balance.balance_amt, hong_before - 1_000);
    // The inquiry id is used up on every node.
    let again = banks[1]
        .balance(
            &call(&claims),
            &format!("{DEMO_CLIENT_USE_CODE}U000000043"),
            &fin,
        )
        .await;
    assert!(
        matches!(&again, Err(BankError::Refused(r)) if r.rsp_code == "A0326"),
        "{again:?}"
    );
    // So are a real-name inquiry's and a receive check's ids: answered on
    // one node, a repeat on another is a duplicate; a refusal before the
    // id is used (a holder-info type the bank does not know) leaves the id
    // for a later, proper inquiry.
    let real_name = |n: u32, info_type: &str| RealNameQuery {
        bank_tran_id: format!("{DEMO_CLIENT_USE_CODE}U{n:09}"),
        account: AccountRef {
            bank_code_std: "097".into(),
            account_num: "1101234567890".into(),
        },
        account_holder_info_type: info_type.into(),
        account_holder_info: "880101".into(),
    };
    let refused = banks[0]
        .real_name(&call(&claims), &real_name(44, "X"))
        .await;
    assert!(
        matches!(&refused, Err(BankError::Refused(r)) if r.rsp_code != "A0326"),
        "{refused:?}"
    );
    let named = banks[1]
        .real_name(&call(&claims), &real_name(44, " "))
        .await?;
    assert_eq!(named.account_holder_name, "홍길동");
    let again = banks[2]
        .real_name(&call(&claims), &real_name(44, " "))
        .await;
    assert!(
        matches!(&again, Err(BankError::Refused(r)) if r.rsp_code == "A0326"),
        "a real-name id used on another node: {again:?}"
    );
    let receive = ReceiveQuery {
        bank_tran_id: format!("{DEMO_CLIENT_USE_CODE}U000000045"),
        recipient: Recipient::FintechUseNum(fin.clone()),
        tran_amt: 1_000,
        cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
        print_content: "cluster".into(),
    };
    banks[2].receive(&call(&claims), &receive).await?;
    let again = banks[0].receive(&call(&claims), &receive).await;
    assert!(
        matches!(&again, Err(BankError::Refused(r)) if r.rsp_code == "A0326"),
        "a receive id used on another node: {again:?}"
    );
    Ok(())
}

/// The daily limit and the funds are the cluster's to decide (its usage
/// counters and balances, in one statement: schema V9's `ledger_book`):
/// withdrawals through two nodes' banks count against one daily limit, the
/// one that would pass it is refused and books nothing, a resend of a
/// refused id is a duplicate on the other node, and a withdrawal past the
/// account's funds is refused with the bank's 422 and recorded, so that
/// transfer-result on the other node gives that refusal back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_funds_are_decided_once_for_every_node() -> Result<()> {
    use sfop_core::ledger::codes;
    let Some(url) = database("money_limits").await? else {
        return Ok(());
    };
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let mut banks = Vec::new();
    for dir in &dirs {
        let local = VirtualBank::open(&sfop_store::Store::open(dir.path())?)?;
        // Hong may withdraw 3,000 won a day (on every node's bank).
        local.set_user_limits("1100000001", 10_000_000, 3_000)?;
        banks.push(ClusterBank::open(local, Cluster::connect(&url, 4).await?).await?);
    }
    let ledger = banks[0].cluster().clone();
    let total = ledger.total_balance().await?;
    let before = ledger.balance(HONG_MAIN).await?.context("hong")?;
    let claims = hong();
    let fin = hong_main_fin(&banks[0])?;
    let request = |n: u32, amount: u64| {
        withdraw_request(&format!("{DEMO_CLIENT_USE_CODE}U{n:09}"), &fin, amount)
    };
    let first = banks[0]
        .withdraw(&call(&claims), &request(51, 1_000))
        .await?;
    assert_eq!(first.wd_limit_remain_amt, Some(2_000));
    let second = banks[1]
        .withdraw(&call(&claims), &request(52, 1_500))
        .await?;
    assert_eq!(second.wd_limit_remain_amt, Some(500));
    let past = banks[0].withdraw(&call(&claims), &request(53, 1_000)).await;
    assert!(
        matches!(&past, Err(BankError::Refused(r)) if r.rsp_code == codes::USER_WD_DAILY),
        "past the daily limit counted over two nodes: {past:?}"
    );
    let resent = banks[1].withdraw(&call(&claims), &request(53, 1_000)).await;
    assert!(
        matches!(&resent, Err(BankError::Refused(r)) if r.rsp_code == "A0326"),
        "the refused id resent on the other node: {resent:?}"
    );
    assert_eq!(
        ledger
            .postings_of(
                DEMO_CLIENT_USE_CODE,
                &format!("{DEMO_CLIENT_USE_CODE}U000000053")
            )
            .await?,
        0
    );
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(before - 2_500));

    // Past the funds (the limits raised on both nodes first).
    for bank in &banks {
        bank.local()
            .set_user_limits("1100000001", 1_000_000_000, 1_000_000_000)?;
    }
    let funds = u64::try_from(before - 2_500)?;
    ensure!(
        funds < 9_000_000,
        "hong's funds {funds} reach the per-transfer limit"
    );
    let short = banks[1]
        .withdraw(&call(&claims), &request(54, funds + 1))
        .await;
    let refusal = match short {
        Err(BankError::Refused(r)) => r,
        other => bail!("a withdrawal past the funds: {other:?}"),
    };
    assert_eq!(
        refusal.bank.as_ref().map(|b| b.bank_rsp_code.as_str()),
        Some("422"),
        "{refusal:?}"
    );
    let results = banks[0]
        .transfer_result(
            &call(&claims),
            &[ResultQuery {
                kind: TransferKind::Withdraw,
                org_bank_tran_id: format!("{DEMO_CLIENT_USE_CODE}U000000054"),
                org_bank_tran_date: first.answer.bank_tran_date.clone(),
                org_tran_amt: funds + 1,
            }],
        )
        .await?;
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].as_ref().err().and_then(|r| r.bank.clone()),
        refusal.bank,
        "transfer-result on the other node: {results:?}"
    );
    // Everything that is left can go, once.
    let all = banks[0]
        .withdraw(&call(&claims), &request(55, funds))
        .await?;
    assert_eq!(all.answer.bank_rsp_code, "000");
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(0));
    assert_eq!(ledger.total_balance().await?, total);
    Ok(())
}

/// A change this node cannot apply (one a newer build wrote, say) leaves
/// its institutions possibly out of date (a suspension missed), so the
/// node moves no money until it can: withdrawals are refused `A0002`
/// (the platform's failure; nothing done), and the change that met it is
/// reported as recorded but not applied here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_apply_a_change_moves_no_money() -> Result<()> {
    let Some(url) = database("money_stalled").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let local = VirtualBank::open(&sfop_store::Store::open(dir.path())?)?;
    let bank = ClusterBank::open(local, Cluster::connect(&url, 4).await?).await?;
    let ledger = bank.cluster().clone();
    let before = ledger.balance(HONG_MAIN).await?;
    let fin = hong_main_fin(&bank)?;
    let claims = hong();
    bank.withdraw(
        &call(&claims),
        &withdraw_request(&format!("{DEMO_CLIENT_USE_CODE}U000000061"), &fin, 1_000),
    )
    .await?;
    ledger
        .append_bank_change(&json!({ "op": "from_a_newer_build", "client_use_code": "M1" }))
        .await?;
    let change = sfop_vbank::BankChange::SetInstitutionLimits {
        client_use_code: DEMO_CLIENT_USE_CODE.into(),
        withdraw_limits: Some(sfop_vbank::seed::DEMO_LIMITS),
        deposit_limits: None,
    };
    // The change is refused before it is recorded: this node cannot check
    // it against records it knows to be behind.
    let recorded = ledger.bank_changes_after(0).await?.len();
    let submitted = bank.submit(&change).await;
    assert!(
        matches!(&submitted, Err(sfop_vbank::Error::Failed(m)) if m.contains("not a change this build knows")),
        "{submitted:?}"
    );
    assert_eq!(ledger.bank_changes_after(0).await?.len(), recorded);
    let refused = bank
        .withdraw(
            &call(&claims),
            &withdraw_request(&format!("{DEMO_CLIENT_USE_CODE}U000000062"), &fin, 1_000),
        )
        .await;
    assert!(
        matches!(&refused, Err(BankError::Backend(m)) if m.contains("behind the cluster")),
        "{refused:?}"
    );
    assert_eq!(ledger.balance(HONG_MAIN).await?, before.map(|b| b - 1_000));
    assert_eq!(
        ledger
            .postings_of(
                DEMO_CLIENT_USE_CODE,
                &format!("{DEMO_CLIENT_USE_CODE}U000000062")
            )
            .await?,
        0
    );
    Ok(())
}

/// A change acknowledged through one node is seen by the next change sent
/// through another at once, whether or not that node's feed has brought it
/// yet: an institution created through A has its sandbox account opened
/// through B straight after (neither node follows a feed here, so B knows
/// A's change only if it reads the cluster's changes before it checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_node_is_seen_by_the_next_through_another() -> Result<()> {
    let Some(url) = database("changes_read_your_writes").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut banks = Vec::new();
    for node in ["a", "b"] {
        let local = VirtualBank::open(&sfop_store::Store::open(&dir.path().join(node))?)?;
        banks.push(ClusterBank::open(local, Cluster::connect(&url, 2).await?).await?);
    }
    let code = "M555000111";
    let created = banks[0]
        .submit(&sfop_vbank::BankChange::CreateInstitution(
            sfop_vbank::NewInstitution {
                client_use_code: code.into(),
                name: "바로핀테크".into(),
                state: sfop_vbank::InstitutionState::Requested,
                wd_pass_phrase: None,
                withdraw_limits: None,
                deposit_limits: None,
            },
        ))
        .await?;
    assert_eq!(created.institution.client_use_code, code);
    let opened = banks[1]
        .submit(&sfop_vbank::BankChange::OpenSandboxContractAccount {
            client_use_code: code.into(),
            opening_balance: 1_000_000,
            now_millis: 1_764_000_000_000,
        })
        .await?;
    let num = opened.account_num.context("an account opened")?;
    assert_eq!(opened.institution.contract_accounts.len(), 1);
    assert_eq!(
        banks[0].cluster().balance(&format!("097/{num}")).await?,
        Some(1_000_000)
    );
    Ok(())
}

/// What a fintech sends to reach money that is not its user's, through a
/// clustered bank: another user's fintech number (withdraw, balance),
/// another institution's transfer-result, no verified caller, a date that
/// is no day. Each is refused with the caller's code, and nothing is
/// written: the ledger is unchanged and the bank_tran_id stays unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clustered_bank_refuses_another_users_money_and_writes_nothing() -> Result<()> {
    use sfop_core::ledger::codes;
    let Some(url) = database("money_attacker").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let local = VirtualBank::open(&sfop_store::Store::open(dir.path())?)?;
    let bank = ClusterBank::open(local, Cluster::connect(&url, 2).await?).await?;
    let ledger = bank.cluster().clone();
    let total = ledger.total_balance().await?;
    let (hong, kim) = (
        hong(),
        Claims {
            user_seq_no: Some("1100000002".into()),
            ..self::hong()
        },
    );
    let fintech_of = |claims: &Claims, user: &str| -> Result<String> {
        Ok(bank
            .local()
            .registered_accounts(&call(claims), user, false)?
            .into_iter()
            .find(|a| a.transfer_agree_dtime.is_some())
            .context("an account with a transfer consent")?
            .fintech_use_num)
    };
    let (hong_fin, kim_fin) = (
        fintech_of(&hong, "1100000001")?,
        fintech_of(&kim, "1100000002")?,
    );
    let id = format!("{DEMO_CLIENT_USE_CODE}U000000077");
    let withdraw = |fintech_use_num: &str| withdraw_request(&id, fintech_use_num, 1_000);
    let refused = |answer: std::result::Result<_, BankError>, code: &str| -> Result<()> {
        match answer {
            Err(BankError::Refused(r)) if r.rsp_code == code => Ok(()),
            other => bail!("expected {code}, got {:?}", other.map(|_: ()| ())),
        }
    };
    // Hong's token, Kim's fintech number: no money moves, no id consumed.
    refused(
        bank.withdraw(&call(&hong), &withdraw(&kim_fin))
            .await
            .map(drop),
        codes::FINTECH_NUM_MISMATCH,
    )?;
    refused(
        bank.balance(&call(&hong), &id, &kim_fin).await.map(drop),
        codes::FINTECH_NUM_MISMATCH,
    )?;
    // No verified caller at all.
    let anonymous = BankCall {
        caller: None,
        ..call(&hong)
    };
    refused(
        bank.withdraw(&anonymous, &withdraw(&hong_fin))
            .await
            .map(drop),
        codes::NO_ACCESS,
    )?;
    assert_eq!(ledger.total_balance().await?, total);
    assert_eq!(ledger.postings_of(DEMO_CLIENT_USE_CODE, &id).await?, 0);
    // The id is still Hong's to use, once.
    let receipt = bank.withdraw(&call(&hong), &withdraw(&hong_fin)).await?;
    let date = receipt.answer.bank_tran_date.clone();
    refused(
        bank.withdraw(&call(&hong), &withdraw(&hong_fin))
            .await
            .map(drop),
        codes::DUPLICATE_BANK_TRAN_ID,
    )?;

    // Another institution asks for that receipt; a caller asks with a date
    // that is no day (the ledger's to_date would fail: the caller's error,
    // not the bank's). Both: no original.
    let other_institution = Claims {
        client_use_code: Some("M202300999".into()),
        ..hong.clone()
    };
    let ask = |claims: Claims, org_bank_tran_date: String| {
        let (bank, id) = (bank.clone(), id.clone());
        async move {
            bank.transfer_result(
                &call(&claims),
                &[ResultQuery {
                    kind: TransferKind::Withdraw,
                    org_bank_tran_id: id,
                    org_bank_tran_date,
                    org_tran_amt: 1_000,
                }],
            )
            .await
        }
    };
    for (claims, date) in [
        (other_institution, date.clone()),
        (hong.clone(), "20261399".to_owned()),
        (hong.clone(), "2026０1".to_owned()),
    ] {
        let results = ask(claims, date.clone()).await?;
        let bank_code = match results.as_slice() {
            [Err(r)] => r.bank.as_ref().map(|b| b.bank_rsp_code.clone()),
            other => bail!("{date}: expected one refusal, got {other:?}"),
        };
        assert_eq!(bank_code.as_deref(), Some("430"), "{date}");
    }
    // The owner still reads it.
    let results = ask(hong.clone(), date).await?;
    ensure!(matches!(results.as_slice(), [Ok(r)] if r.answer == receipt.answer));

    // The statement is the cluster's, a page at a time; Kim cannot read it.
    bank.withdraw(
        &call(&hong),
        &WithdrawRequest {
            bank_tran_id: format!("{DEMO_CLIENT_USE_CODE}U000000078"),
            tran_amt: 2_000,
            ..withdraw(&hong_fin)
        },
    )
    .await?;
    let list = |claims: Claims, n: u32, cursor: Option<String>| {
        let (bank, fintech_use_num) = (bank.clone(), hong_fin.clone());
        async move {
            bank.transactions(
                &call(&claims),
                &sfop_core::ledger::HistoryQuery {
                    bank_tran_id: format!("{DEMO_CLIENT_USE_CODE}U00000008{n}"),
                    fintech_use_num,
                    inquiry_type: sfop_core::ledger::InoutFilter::All,
                    from_dtime: "20000101000000".into(),
                    to_dtime: "99991231235959".into(),
                    sort_order: sfop_core::ledger::SortOrder::Descending,
                    cursor,
                    page_size: 1,
                },
            )
            .await
        }
    };
    refused(
        list(kim, 0, None).await.map(drop),
        codes::FINTECH_NUM_MISMATCH,
    )?;
    let first = list(hong.clone(), 1, None).await?;
    let second = list(hong.clone(), 2, first.next_cursor.clone()).await?;
    let amounts = |page: &sfop_core::ledger::HistoryPage| {
        let p: Vec<_> = page.postings.iter().map(|p| p.tran_amt).collect();
        (p, page.total_record_cnt, page.next_cursor.is_some())
    };
    assert_eq!(amounts(&first), (vec![2_000], 2, true));
    assert_eq!(amounts(&second), (vec![1_000], 2, false));
    assert_eq!(second.balance_amt, first.balance_amt);
    Ok(())
}

/// Copies a data dir, modes kept (the platform refuses keys others can read).
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `sfop serve` as a node of the cluster at `url`, with `config` (TOML,
/// beside the data dir) if any.
pub fn node(data: &Path, log: &Path, url: &str, config: Option<&str>) -> Result<Served> {
    node_serving(None, data, log, url, config)
}

/// [`node`] serving the packages in `plugins` (none: the reference APIs).
pub fn node_serving(
    plugins: Option<&Path>,
    data: &Path,
    log: &Path,
    url: &str,
    config: Option<&str>,
) -> Result<Served> {
    let mut cmd = match plugins {
        Some(plugins) => serve_plugins(plugins, data, log)?,
        None => serve_command(data, log)?,
    };
    cmd.env("SFOP_STORE_URL", url);
    if let Some(config) = config {
        let file = log.with_extension("toml");
        std::fs::write(&file, config)?;
        cmd.arg("--config").arg(file);
    }
    Served::spawn(cmd, data, log)
}

fn kst(len: usize) -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..len]
        .to_owned()
}

/// The cluster's three nodes ([`crate::cluster::three_nodes`]), A first.
async fn three_nodes(dir: &Path, url: &str, config: Option<&str>) -> Result<Vec<Served>> {
    let (a, b, c) = crate::cluster::three_nodes(dir, url, config).await?;
    Ok(vec![a, b, c])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_bank_tran_id_over_three_nodes_is_booked_once() -> Result<()> {
    let Some(url) = database("money_nodes").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let nodes = three_nodes(dir.path(), &url, None).await?;
    let ledger = Cluster::connect(&url, 2).await?;
    let total_before = ledger.total_balance().await?;
    let hong_before = ledger.balance(HONG_MAIN).await?.context("hong's account")?;

    let token = nodes[0].user_token("hong", "hong1234").await?;
    let list = nodes[1]
        .connect()
        .await?
        .get_bearer(
            "/v2.0/account/list?user_seq_no=1100000001&include_cancel_yn=N&sort_order=A",
            &token,
        )
        .await?
        .json()?;
    let fin = list["res_list"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["bank_code_std"] == "097"))
        .and_then(|a| a["fintech_use_num"].as_str())
        .with_context(|| format!("hong's 097 account on B: {list}"))?
        .to_owned();
    let id = format!("{DEMO_CLIENT_USE_CODE}U000000100");
    let body = json!({
        "bank_tran_id": id,
        "cntr_account_type": "N",
        "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
        "dps_print_content": "홍길동",
        "fintech_use_num": fin,
        "wd_print_content": "cluster",
        "tran_amt": "1000",
        "tran_dtime": kst(14),
        "req_client_name": "홍길동",
        "req_client_num": "HONG0001",
        "transfer_purpose": "TR",
    })
    .to_string();

    // Connections first, so that the sends leave together.
    let nodes = Arc::new(nodes);
    let mut conns = Vec::with_capacity(SENDS);
    for i in 0..SENDS {
        conns.push(nodes[i % 3].connect().await?);
    }
    let auth = Arc::new(format!("Bearer {token}"));
    let start = Instant::now();
    let sends: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            let (auth, body) = (auth.clone(), body.clone());
            tokio::spawn(async move {
                let headers = [
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ];
                let reply = tokio::time::timeout(
                    BOUND,
                    conn.send(
                        "POST",
                        "/v2.0/transfer/withdraw/fin_num",
                        &headers,
                        body.into_bytes(),
                    ),
                )
                .await
                .with_context(|| format!("send {i} hung"))??;
                let answer: Value = reply.json()?;
                Ok::<_, anyhow::Error>((i % 3, reply.status, answer))
            })
        })
        .collect();
    let mut booked = Vec::new();
    let mut duplicates = [0usize; 3];
    for send in sends {
        let (node, status, answer) = send.await??;
        match answer["rsp_code"].as_str() {
            Some("A0000") => booked.push((node, answer)),
            Some("A0326") => duplicates[node] += 1,
            _ => bail!("node {node}: {status} {answer}"),
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{SENDS} sends of one bank_tran_id over 3 nodes: 1 booked (node {}), duplicates per \
         node {duplicates:?}, {elapsed:?}",
        booked.first().map_or(9, |b| b.0)
    );
    ensure!(
        booked.len() == 1,
        "booked {} times: {booked:?}",
        booked.len()
    );
    assert_eq!(duplicates.iter().sum::<usize>(), SENDS - 1);
    assert_eq!(ledger.postings_of(DEMO_CLIENT_USE_CODE, &id).await?, 2);
    assert_eq!(ledger.total_balance().await?, total_before);
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(hong_before - 1_000));

    // Each node reads the same balance from the ledger.
    for (n, served) in nodes.iter().enumerate() {
        let b = served
            .connect()
            .await?
            .get_bearer(
                &format!(
                    "/v2.0/account/balance/fin_num?bank_tran_id={DEMO_CLIENT_USE_CODE}U00000020{n}\
                     &fintech_use_num={fin}&tran_dtime={}",
                    kst(14)
                ),
                &token,
            )
            .await?
            .json()?;
        assert_eq!(b["rsp_code"], "A0000", "node {n}: {b}");
        assert_eq!(
            b["balance_amt"].as_str(),
            Some((hong_before - 1_000).to_string().as_str()),
            "node {n}: {b}"
        );
    }
    let nodes = Arc::into_inner(nodes).context("nodes still shared")?;
    for served in nodes {
        served.stop()?;
    }
    Ok(())
}

/// A PostgreSQL server of this test's own (the store's test helper), so
/// that restarting it disturbs no other test.
#[path = "../../../store-pg/tests/all/server.rs"]
pub(crate) mod pg_server;

/// What the load saw during the restart.
#[derive(Default, Debug)]
struct Seen {
    /// `(bank_tran_id, amount)` of each acknowledged withdrawal.
    acked: Vec<String>,
    /// Withdrawals answered `A0002` (the ledger unreachable), by id.
    unavailable: Vec<String>,
    /// Reads (route, token check, the node's own bank) answered `A0000`.
    reads_ok: u32,
    /// Anything else, with what it was.
    other: Vec<String>,
}

/// Acceptance 5: PostgreSQL restarts while node A takes withdrawals and B
/// and C serve reads (bank status). The reads go on (route table, token
/// check, the node's own bank); withdrawals during the outage are refused
/// with `A0002` (the platform's failure, with what to do), never
/// acknowledged unless booked; a management call is 503 `A0013` and changes
/// nothing; a change made on A as the database comes back is served by B
/// and C (no version change missed); afterwards every acknowledged
/// withdrawal is booked once, Σ balances is unchanged, and transfers go
/// through again on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_loses_no_acknowledged_transfer() -> Result<()> {
    let server = match pg_server::Server::start()? {
        Some(server) => server,
        None => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            ensure!(
                !ci,
                "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): `cargo xtask ci` \
                 installs them"
            );
            eprintln!("skipped: no PostgreSQL server binaries");
            return Ok(());
        }
    };
    let url = sfop_store_pg::recreate_database(&server.url(), "sfop_money_restart").await?;
    let dir = tempfile::tempdir()?;
    // Token checks go on through the restart only if the revocation list
    // may be as old as the outage (ADR 0029: older, a node fails closed).
    let nodes = three_nodes(
        dir.path(),
        &url,
        Some("[auth]\nrevocation_max_lag_ms = 10000\n"),
    )
    .await?;
    let ledger = Cluster::connect(&url, 2).await?;
    let total_before = ledger.total_balance().await?;
    let hong_before = ledger.balance(HONG_MAIN).await?.context("hong's account")?;
    let token = Arc::new(nodes[0].user_token("hong", "hong1234").await?);
    let list = nodes[0]
        .connect()
        .await?
        .get_bearer(
            "/v2.0/account/list?user_seq_no=1100000001&include_cancel_yn=N&sort_order=A",
            &token,
        )
        .await?
        .json()?;
    let fin = Arc::new(
        list["res_list"]
            .as_array()
            .and_then(|l| l.iter().find(|a| a["bank_code_std"] == "097"))
            .and_then(|a| a["fintech_use_num"].as_str())
            .with_context(|| format!("hong's 097 account: {list}"))?
            .to_owned(),
    );
    let nodes = Arc::new(nodes);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));

    // Withdrawals on A, one after another on two connections.
    let mut load = Vec::new();
    for stream in 0..2u32 {
        let (nodes, token, fin, stop, seen) = (
            nodes.clone(),
            token.clone(),
            fin.clone(),
            stop.clone(),
            seen.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut conn = nodes[0].connect().await?;
            let auth = format!("Bearer {token}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = format!("{DEMO_CLIENT_USE_CODE}U{:09}", stream * 100_000_000 + n);
                let body = json!({
                    "bank_tran_id": id,
                    "cntr_account_type": "N",
                    "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
                    "dps_print_content": "홍길동",
                    "fintech_use_num": *fin,
                    "wd_print_content": "restart",
                    "tran_amt": "100",
                    "tran_dtime": kst(14),
                    "req_client_name": "홍길동",
                    "req_client_num": "HONG0001",
                    "transfer_purpose": "TR",
                })
                .to_string();
                let reply = tokio::time::timeout(
                    BOUND,
                    conn.send(
                        "POST",
                        "/v2.0/transfer/withdraw/fin_num",
                        &headers,
                        body.into_bytes(),
                    ),
                )
                .await
                .with_context(|| format!("withdrawal {id} hung"))??;
                let answer: Value = reply.json()?;
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                match answer["rsp_code"].as_str() {
                    Some("A0000") => seen.acked.push(id),
                    Some("A0002") => seen.unavailable.push(id),
                    _ => seen
                        .other
                        .push(format!("withdraw {id}: {} {answer}", reply.status)),
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    // Reads on B and C, paced (every 5 ms): the route, the token check,
    // the node's own bank (bank status; the user's registered accounts are
    // the cluster's, ADR 0030, and fail with A0002 while it is away).
    let oob = Arc::new(nodes[0].oob_token().await?);
    for node in 1..3 {
        let (nodes, oob, stop, seen) = (nodes.clone(), oob.clone(), stop.clone(), seen.clone());
        load.push(tokio::spawn(async move {
            let mut conn = nodes[node].connect().await?;
            let mut pace = tokio::time::interval(Duration::from_millis(5));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                pace.tick().await;
                let reply = tokio::time::timeout(BOUND, conn.get_bearer("/v2.0/bank/status", &oob))
                    .await
                    .context("a read hung")??;
                let answer: Value = reply.json()?;
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                if answer["rsp_code"] == "A0000" {
                    seen.reads_ok += 1;
                } else if seen.other.len() < 10 {
                    seen.other
                        .push(format!("read on node {node}: {} {answer}", reply.status));
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let acked_count = |seen: &std::sync::Mutex<Seen>| seen.lock().map_or(0, |s| s.acked.len());
    let deadline = Instant::now() + BOUND;
    while acked_count(&seen) < 10 {
        ensure!(
            Instant::now() < deadline,
            "no withdrawals before the restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restarting = Instant::now();
    let server = tokio::task::spawn_blocking(move || server.stop().map(|()| server)).await??;
    // Down: a management call fails with the platform's clear code and
    // changes nothing (the reads and withdrawals above go on meanwhile).
    let sunset = json!({ "name": "account-list", "sunset": "2099-12-31" });
    let (status, answer) =
        crate::cluster::admin(&nodes[0], "/admin/v1/apis/deprecate", sunset.clone()).await?;
    assert_eq!(
        (status, answer["rsp_code"].as_str()),
        (503, Some("A0013")),
        "{answer}"
    );
    let server =
        tokio::task::spawn_blocking(move || server.start_again().map(|()| server)).await??;
    let back = restarting.elapsed();
    // Back: the same change on A as soon as A takes it, before B and C need
    // have heard of the database's return; they serve it all the same
    // (NOTIFY is not durable: they compare versions on reconnect and
    // periodically).
    let changed = loop {
        let (status, answer) =
            crate::cluster::admin(&nodes[0], "/admin/v1/apis/deprecate", sunset.clone()).await?;
        match status {
            200 => break Instant::now(),
            503 if Instant::now() < deadline + BOUND => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => bail!("deprecate after the restart: {status} {answer}"),
        }
    };
    for (n, served) in nodes.iter().enumerate().skip(1) {
        loop {
            let reply = served
                .connect()
                .await?
                .get_bearer(
                    "/v2.0/account/list?user_seq_no=1100000001&include_cancel_yn=N&sort_order=A",
                    &token,
                )
                .await?;
            if reply.headers.contains_key("sunset") {
                break;
            }
            ensure!(
                changed.elapsed() < BOUND,
                "node {n} missed the change made as the database came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!(
        "the change made on A as the database came back served by B and C {:?} after",
        changed.elapsed()
    );
    // Load on until withdrawals are acknowledged again.
    let after = acked_count(&seen);
    while acked_count(&seen) < after + 10 {
        ensure!(
            Instant::now() < deadline + BOUND,
            "withdrawals did not resume after the restart: {:?}",
            seen.lock().map(|s| s.other.clone())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resumed = restarting.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await??;
    }
    let seen = std::mem::take(&mut *seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    println!(
        "restart: server back in {back:?}, withdrawals acknowledged again {resumed:?} after \
         it began; {} acknowledged, {} refused A0002, {} reads answered, other: {:?}",
        seen.acked.len(),
        seen.unavailable.len(),
        seen.reads_ok,
        seen.other
    );
    ensure!(
        seen.other.is_empty(),
        "unexpected answers: {:?}",
        seen.other
    );
    assert!(seen.reads_ok > 0);

    // Every acknowledged withdrawal is booked once; a refused one may have
    // been booked (cut at its commit), and a resend says which.
    for id in &seen.acked {
        assert_eq!(
            ledger.postings_of(DEMO_CLIENT_USE_CODE, id).await?,
            2,
            "acknowledged {id}"
        );
    }
    let mut refused_but_booked = 0;
    for id in &seen.unavailable {
        match ledger.postings_of(DEMO_CLIENT_USE_CODE, id).await? {
            0 => {}
            2 => refused_but_booked += 1,
            n => bail!("{id}: {n} postings"),
        }
    }
    let booked = (seen.acked.len() + refused_but_booked) as i64;
    assert_eq!(ledger.total_balance().await?, total_before);
    assert_eq!(
        ledger.balance(HONG_MAIN).await?,
        Some(hong_before - 100 * booked)
    );
    println!("{refused_but_booked} of the refused withdrawals had been booked (cut at commit)");

    // Each node books again.
    for (n, served) in nodes.iter().enumerate() {
        let reply = served
            .connect()
            .await?
            .send(
                "POST",
                "/v2.0/transfer/withdraw/fin_num",
                &[
                    ("authorization", format!("Bearer {token}").as_str()),
                    ("content-type", "application/json"),
                ],
                json!({
                    "bank_tran_id": format!("{DEMO_CLIENT_USE_CODE}U9{n:08}"),
                    "cntr_account_type": "N",
                    "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
                    "dps_print_content": "홍길동",
                    "fintech_use_num": *fin,
                    "wd_print_content": "after",
                    "tran_amt": "100",
                    "tran_dtime": kst(14),
                    "req_client_name": "홍길동",
                    "req_client_num": "HONG0001",
                    "transfer_purpose": "TR",
                })
                .to_string()
                .into_bytes(),
            )
            .await?;
        let answer = reply.json()?;
        assert_eq!(answer["rsp_code"], "A0000", "node {n} after: {answer}");
    }
    let nodes = Arc::into_inner(nodes).context("nodes still shared")?;
    for served in nodes {
        served.stop()?;
    }
    drop(server);
    Ok(())
}
