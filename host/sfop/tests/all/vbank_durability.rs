//! Issue 5: a process booking transfers in the virtual bank is SIGKILLed
//! mid-stream; every transfer it acknowledged is there exactly once after
//! reopening, and the ledger still balances.
//!
//! The child is this test binary run again with [`CHILD_ENV`] set, running
//! only [`child_books_transfers`], which prints `ACK <bank_tran_id>` after
//! each transfer the bank answered (so: after the flush).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use sfop_core::Claims;
use sfop_core::ledger::{BankCall, ResultQuery, TransferKind, WithdrawRequest};
use sfop_store::Store;
use sfop_vbank::VirtualBank;
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};

/// Set to the store's directory in the child.
const CHILD_ENV: &str = "SFOP_TEST_VBANK_CRASH_CHILD";
/// Acknowledgements the parent waits for before it kills the child.
const KILL_AFTER: usize = 40;
const HONG_MAIN: &str = "097/1101234567890";

fn hong() -> Claims {
    Claims {
        client_id: DEMO_CLIENT_ID.into(),
        client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
        user_seq_no: Some("1100000001".into()),
        scopes: vec!["transfer".into()],
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

/// The child's work; a no-op in a normal test run.
#[test]
fn child_books_transfers() -> Result<()> {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let bank = VirtualBank::open(&Store::open(std::path::Path::new(&dir))?)?;
    let claims = hong();
    let fin = bank
        .registered_accounts(&call(&claims), "1100000001", false)?
        .into_iter()
        .find(|a| a.bank_code_std == "097")
        .context("hong's account at 097")?
        .fintech_use_num;
    for i in 0..2_000u32 {
        let id = format!("{DEMO_CLIENT_USE_CODE}U{i:09}");
        let receipt = bank.withdraw(
            &call(&claims),
            &WithdrawRequest {
                bank_tran_id: id.clone(),
                fintech_use_num: fin.clone(),
                tran_amt: 100,
                cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
                wd_print_content: "crash test".into(),
                dps_print_content: "crash test".into(),
                req_client_name: "홍길동".into(),
                req_client_num: "HONG".into(),
                transfer_purpose: "TR".into(),
                recv_client_name: String::new(),
                recv_client_bank_code: String::new(),
                recv_client_account_num: String::new(),
            },
        )?;
        println!("ACK {id} {}", receipt.answer.bank_tran_date);
    }
    Ok(())
}

#[test]
fn acknowledged_transfers_survive_sigkill_exactly_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (capital, before) = {
        let bank = VirtualBank::open(&Store::open(dir.path())?)?;
        (bank.capital()?, bank.balance_of(HONG_MAIN)?)
    };
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "vbank_durability::child_books_transfers",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (id, date) = rest.split_once(' ').context("ACK id date")?;
            acked.push((id.to_owned(), date.to_owned()));
            if acked.len() == KILL_AFTER {
                child.kill()?; // SIGKILL, mid-stream
                break;
            }
        }
    }
    child.wait()?;
    assert_eq!(
        acked.len(),
        KILL_AFTER,
        "the child stopped before it was killed"
    );

    let bank = VirtualBank::open(&Store::open(dir.path())?)?;
    let statement = bank.statement(HONG_MAIN)?;
    for (id, _) in &acked {
        let n = statement
            .iter()
            .filter(|p| p.bank_tran_id.as_deref() == Some(id))
            .count();
        assert_eq!(n, 1, "acknowledged transfer {id} booked {n} times");
    }
    // Whatever was booked (acknowledged or in flight at the kill), each id once.
    let mut ids: Vec<&str> = statement
        .iter()
        .filter_map(|p| p.bank_tran_id.as_deref())
        .collect();
    let booked = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), booked, "a transfer was applied twice");
    assert!(booked >= KILL_AFTER);
    assert_eq!(bank.balance_of(HONG_MAIN)?, before - 100 * booked as i64);
    assert_eq!(bank.total_balance()?, capital);
    assert_eq!(bank.audit()?, Ok(()));
    // And the bank reports each acknowledged one as done.
    let claims = hong();
    let queries: Vec<ResultQuery> = acked
        .iter()
        .map(|(id, date)| ResultQuery {
            kind: TransferKind::Withdraw,
            org_bank_tran_id: id.clone(),
            org_bank_tran_date: date.clone(),
            org_tran_amt: 100,
        })
        .collect();
    let results = bank.transfer_result(&call(&claims), &queries)?;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.answer.bank_rsp_code == "000"))
    );
    Ok(())
}
