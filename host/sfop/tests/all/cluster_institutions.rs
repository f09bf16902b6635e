//! Issue 20, institutions on a cluster (ADR 0030, "The bank's records on
//! every node"): an institution onboarded through one node's admin API,
//! its sandbox contract account opened through a second and its approval
//! through a third is the same record on all three; its app moves money
//! through any node, into an account the cluster's ledger holds; a
//! suspension through one node stops it on the others; a node that was
//! down when a change was made applies it before it serves again; two
//! nodes onboarding one code at once onboard it once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sfop_admin_api::institutions::{
    ACCOUNTS, APPROVE, LIMITS, LIST as INSTITUTIONS, RESUME, SUSPEND, VERIFY,
};
use sfop_core::ledger::codes;
use sfop_store_pg::Cluster;

use crate::cluster::{admin, admin_attacks_write_nothing, admin_list, start, three_nodes};
use crate::cluster_consents::{consent, register_app, withdrawal};
use crate::cluster_money::database;
use crate::served::Served;

const HONG_MAIN: &str = "097/1101234567890";

/// The institution `code` as `node`'s admin API lists it, if it does.
async fn listed(node: &Served, code: &str) -> Result<Option<Value>> {
    Ok(admin_list(node, INSTITUTIONS)
        .await?
        .into_iter()
        .find(|i| i["client_use_code"] == code))
}

/// Polls `node`'s list until `code` is in `state` (a change made on
/// another node arrives through the feed); how long that took.
async fn listed_as(node: &Served, code: &str, state: &str) -> Result<(Value, Duration)> {
    let started = Instant::now();
    loop {
        let entry = listed(node, code).await?;
        if let Some(entry) = &entry
            && entry["state"] == state
        {
            return Ok((entry.clone(), started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("{code} not {state} on {} after 10 s: {entry:?}", node.url());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An admin call on `node` that must answer `status`; its answer.
async fn change(node: &Served, path: &str, body: Value, status: u16) -> Result<Value> {
    let (got, answer) = admin(node, path, body).await?;
    ensure!(got == status, "{path}: {got} {answer}");
    Ok(answer)
}

/// A withdrawal of 1,000 won from Hong's main account into `contract`,
/// through `node` with `token`: its `rsp_code`.
async fn withdraw(
    node: &Served,
    token: &str,
    fin: &str,
    id: &str,
    contract: &str,
) -> Result<String> {
    let mut body = withdrawal(id, fin, 1_000);
    body["cntr_account_num"] = json!(contract);
    let answer = crate::cluster_consents::withdraw(node, token, &body).await?;
    Ok(answer["rsp_code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_institution_onboarded_through_three_nodes_moves_money_through_any() -> Result<()> {
    let Some(url) = database("cluster_institutions").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (a, b, mut c) = three_nodes(dir.path(), &url, None).await?;
    let ledger = Cluster::connect(&url, 2).await?;
    let total = ledger.total_balance().await?;

    // Created on A, its sandbox account opened on B, approved on C: each
    // node applies the others' changes first.
    let created = change(&a, INSTITUTIONS, json!({ "name": "클러스터핀테크" }), 201).await?;
    let code = created["res_list"][0]["client_use_code"]
        .as_str()
        .with_context(|| format!("{created}"))?
        .to_owned();
    let opened = change(
        &b,
        ACCOUNTS,
        json!({ "client_use_code": code, "open_sandbox": true, "opening_balance": 5_000_000 }),
        200,
    )
    .await?;
    let contract = opened["account_num"]
        .as_str()
        .with_context(|| format!("{opened}"))?
        .to_owned();
    change(&c, APPROVE, json!({ "client_use_code": code }), 200).await?;
    let mut arrivals = Vec::new();
    for node in [&a, &b, &c] {
        let (entry, took) = listed_as(node, &code, "active").await?;
        arrivals.push(took);
        let accounts = entry["contract_accounts"].as_array().context("accounts")?;
        ensure!(
            accounts.len() == 1
                && accounts[0]["account_num"] == contract.as_str()
                && accounts[0]["verified"] == true,
            "{} lists {entry}",
            node.url()
        );
    }
    // The account is on the ledger, funded from the treasury: once.
    let account = format!("097/{contract}");
    ensure!(
        ledger.balance(&account).await? == Some(5_000_000),
        "{account} on the ledger: {:?}",
        ledger.balance(&account).await?
    );
    ensure!(ledger.total_balance().await? == total, "Σ balances moved");

    // Its app, registered on A; Hong consents on A; B and C book
    // withdrawals into the new contract account.
    let app = register_app(&a, "Cluster fintech", Some(&code)).await?;
    let token = consent(&a, &app, ("hong", "hong1234"), &[HONG_MAIN]).await?;
    let fin = {
        let list = crate::cluster_consents::get(
            &b,
            "/v2.0/account/list?user_seq_no=1100000001&include_cancel_yn=N&sort_order=A",
            &token,
        )
        .await?;
        list["res_list"][0]["fintech_use_num"]
            .as_str()
            .with_context(|| format!("{list}"))?
            .to_owned()
    };
    let hong = ledger.balance(HONG_MAIN).await?.context("hong")?;
    for (n, node) in [&b, &c].into_iter().enumerate() {
        let id = format!("{code}U{:09}", 100 + n);
        let rsp = withdraw(node, &token, &fin, &id, &contract).await?;
        ensure!(rsp == "A0000", "withdrawal on node {n}: {rsp}");
        ensure!(ledger.postings_of(&code, &id).await? == 2, "{id} postings");
    }
    ensure!(ledger.balance(HONG_MAIN).await? == Some(hong - 2_000));
    ensure!(ledger.balance(&account).await? == Some(5_002_000));
    // Every node shows the ledger's balance, not the one it opened with.
    for node in [&a, &b, &c] {
        let entry = listed(node, &code).await?.context("listed")?;
        ensure!(
            entry["contract_accounts"][0]["balance_amt"] == 5_002_000,
            "{} lists {entry}",
            node.url()
        );
    }
    ensure!(ledger.total_balance().await? == total, "Σ balances moved");

    // Suspended on A: B and C refuse its withdrawals once they list it so.
    change(&a, SUSPEND, json!({ "client_use_code": code }), 200).await?;
    for (n, node) in [&b, &c].into_iter().enumerate() {
        let (_, took) = listed_as(node, &code, "suspended").await?;
        arrivals.push(took);
        let rsp = withdraw(
            node,
            &token,
            &fin,
            &format!("{code}U{:09}", 200 + n),
            &contract,
        )
        .await?;
        ensure!(
            rsp == codes::NO_ACCESS,
            "withdrawal while suspended on node {n}: {rsp}"
        );
    }

    // C killed; resumed on B meanwhile; C restarted knows it at once
    // (before any notice reaches it) and books again.
    let (c_data, c_log) = (c.data.clone(), dir.path().join("c2.log"));
    drop(c); // SIGKILL
    change(&b, RESUME, json!({ "client_use_code": code }), 200).await?;
    c = start(c_data, c_log, url.clone()).await?;
    let entry = listed(&c, &code).await?.context("C lists it")?;
    ensure!(entry["state"] == "active", "C after its restart: {entry}");
    let rsp = withdraw(&c, &token, &fin, &format!("{code}U000000300"), &contract).await?;
    ensure!(rsp == "A0000", "withdrawal on C after its restart: {rsp}");
    // Resuming what is not suspended is a conflict on every node.
    let (status, answer) = admin(&a, RESUME, json!({ "client_use_code": code })).await?;
    ensure!(status == 409, "resume of an active one: {status} {answer}");

    // One code onboarded on A and B at once: one 201, the other refused,
    // one record everywhere.
    let race = json!({ "name": "경주핀테크", "client_use_code": "M987654321" });
    let (on_a, on_b) = tokio::join!(
        admin(&a, INSTITUTIONS, race.clone()),
        admin(&b, INSTITUTIONS, race.clone())
    );
    let mut statuses = [on_a?.0, on_b?.0];
    statuses.sort_unstable();
    ensure!(
        statuses[0] == 201 && (400..500).contains(&statuses[1]),
        "racing creates: {statuses:?}"
    );
    for node in [&a, &b, &c] {
        listed_as(node, "M987654321", "requested").await?;
    }
    ensure!(ledger.total_balance().await? == total, "Σ balances moved");

    // What an attacker sends to the institutions API of a node (on the
    // create route, then the state routes with the admin's own token):
    // refused with its status and code, and nothing written anywhere (no
    // change recorded, no config version, no audit entry).
    let developer = a.oob_token().await?;
    let nested = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let create = [
        (
            "a repeated field",
            r#"{"name":"가","name":"나"}"#.to_owned(),
            400,
            "A0004",
        ),
        (
            "an unknown field",
            r#"{"name":"가","state":"active"}"#.to_owned(),
            400,
            "A0004",
        ),
        ("5,000-deep JSON", nested, 400, "A0004"),
        ("not JSON", "name=evil".to_owned(), 400, "A0004"),
        (
            "a name past 50 characters",
            json!({ "name": "x".repeat(51) }).to_string(),
            400,
            "A0004",
        ),
        (
            "a body past 16 KiB",
            json!({ "name": "x".repeat(20 << 10) }).to_string(),
            413,
            "A0004",
        ),
        (
            "an onboarded code",
            json!({ "name": "가", "client_use_code": code }).to_string(),
            409,
            "A0004",
        ),
        (
            "a code of another shape",
            json!({ "name": "가", "client_use_code": "X123" }).to_string(),
            400,
            "A0004",
        ),
    ];
    let valid = json!({ "name": "공격핀테크" }).to_string();
    admin_attacks_write_nothing(&b, &url, INSTITUTIONS, &valid, &developer, &create).await?;
    let code_of = |c: &str| json!({ "client_use_code": c }).to_string();
    let states = [
        ("an unknown code", code_of("M000000001"), 404, "A0004"),
        ("resuming an active one", code_of(&code), 409, "A0004"),
        (
            "limits out of order",
            json!({ "client_use_code": code,
                    "withdraw_limits": { "per_tran": 10, "daily": 5, "monthly": 100 } })
            .to_string(),
            400,
            "A0004",
        ),
        (
            "someone else's account as a contract account",
            json!({ "client_use_code": code, "bank_code_std": "097",
                    "account_num": "1101234567890" })
            .to_string(),
            400,
            "A0004",
        ),
    ];
    for (path, hostile) in [
        (SUSPEND, &states[..1]),
        (RESUME, &states[1..2]),
        (LIMITS, &states[2..3]),
        (VERIFY, &states[3..4]),
    ] {
        admin_attacks_write_nothing(&c, &url, path, &code_of(&code), &developer, hostile).await?;
    }
    let entry = listed(&a, &code).await?.context("listed")?;
    ensure!(
        entry["state"] == "active" && entry["withdraw_limits"]["per_tran"] == 5_000_000,
        "after the attacks: {entry}"
    );

    arrivals.sort();
    println!(
        "institution changes reached the other nodes within max {:?} (p50 {:?}) over {} \
         observations",
        arrivals.last(),
        arrivals[arrivals.len() / 2],
        arrivals.len()
    );
    drop((a, b, c));
    Ok(())
}
