//! Micro-benchmarks of the three costs under the gateway's request path, each
//! in isolation (criterion, short settings):
//!
//! - `runtime/instantiate_and_call_echo`: a fresh instance of the trivial
//!   `test/echo` component from the pooling allocator, one call, teardown;
//! - `auth/authorize_cached_signature`: the gateway's decision on a user
//!   token (signature verification cached per token, as in production; the
//!   Datalog authoriser run per request), and `auth/verify_signature`: the
//!   uncached signature check a token's first request pays;
//! - `ledger/withdraw_durable`: one withdrawal in the virtual bank, from
//!   request to acknowledgement after the sled flush.
//!
//! Run with: `cargo xtask bench-micro` (builds the plugins first), or
//! `cargo bench -p sfop-bench --bench micro` after `cargo xtask build-plugins`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use criterion::{Criterion, criterion_group, criterion_main};
use sfop_auth::{AccessGrant, AuthInput, KeyRing, PolicyConfig, Revocations, TokenAuthorizer};
use sfop_core::ledger::WithdrawRequest;
use sfop_core::{BankCall, Claims, Manifest};
use sfop_runtime::{Call, Runtime, RuntimeConfig, Services};
use sfop_store::{PluginKv, Store};
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};
use sfop_vbank::{NewAccount, NewUser, Owner, VirtualBank};

/// As in the `sfop` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn plugins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/sfop-plugins")
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    bank: VirtualBank,
}

fn fixture() -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let bank = VirtualBank::open(&store)?;
    Ok(Fixture {
        _dir: dir,
        store,
        bank,
    })
}

fn runtime(c: &mut Criterion) -> Result<()> {
    let f = fixture()?;
    let runtime = Runtime::new(
        Services {
            bank: Arc::new(f.bank.clone()),
            kv: Arc::new(PluginKv::open(&f.store)?),
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        },
        &RuntimeConfig::default(),
    )?;
    let dir = plugins().join("test/echo");
    let manifest = Manifest::parse(
        &std::fs::read_to_string(dir.join("sfop.toml"))
            .with_context(|| format!("{} (run `cargo xtask build-plugins`)", dir.display()))?,
    )?;
    let api = runtime.load(manifest, &std::fs::read(dir.join("api.wasm"))?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let call = Call {
        api_tran_id: "0000000000000000000000000000000a".into(),
        method: "GET".into(),
        path: "/test/echo".into(),
        query: String::new(),
        headers: vec![
            ("host".into(), "127.0.0.1:8080".into()),
            ("user-agent".into(), "bench".into()),
        ],
        body: Vec::new(),
        caller: None,
    };
    // A failed call would measure the error path: check once.
    let reply = rt.block_on(api.call(call.clone()))?;
    anyhow::ensure!(reply.status == 200, "echo answered {}", reply.status);
    c.bench_function("runtime/call_echo", |b| {
        b.iter(|| rt.block_on(api.call(call.clone())))
    });
    Ok(())
}

const ACCOUNT: &str = "120220038200000000000001";
const FUTURE: u64 = 4_102_444_800;

fn auth(c: &mut Criterion) -> Result<()> {
    let f = fixture()?;
    let ring = KeyRing::from_seed(1, &[7; 32])?;
    let authorizer = TokenAuthorizer::new(
        ring.clone(),
        Arc::new(Revocations::open(&f.store)?),
        PolicyConfig::default(),
    );
    let token = AccessGrant {
        client_id: "fintech-app".into(),
        client_use_code: Some("M202200382".into()),
        user_seq_no: Some("1100000001".into()),
        scopes: vec!["login".into(), "inquiry".into(), "transfer".into()],
        fintech_use_nums: vec![ACCOUNT.into()],
        expires_at: FUTURE,
    }
    .issue(&ring)?;
    let bearer = format!("Bearer {token}");
    let input = AuthInput {
        authorization: Some(&bearer),
        api: "account-balance",
        required_scope: "inquiry",
        accounts: vec![ACCOUNT.into()],
        user: None,
        amount: None,
    };
    authorizer
        .authorize(&input)
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    c.bench_function("auth/authorize_cached_signature", |b| {
        b.iter(|| authorizer.authorize(&input))
    });
    c.bench_function("auth/verify_signature", |b| {
        b.iter(|| sfop_auth::token::verify(&ring, &token))
    });
    Ok(())
}

fn ledger(c: &mut Criterion) -> Result<()> {
    let f = fixture()?;
    let now = sfop_core::time::now_millis();
    let user = f.bank.add_user(&NewUser {
        name: "벤치".into(),
        birth_date: "900101".into(),
        login_id: "bench".into(),
        password: "bench-password-1234".into(),
        wd_per_tran: 10_000_000,
        wd_daily: 1_000_000_000,
    })?;
    let id = f.bank.open_account(
        &NewAccount {
            bank_code: "097".into(),
            account_num: "1109999000001".into(),
            owner: Owner::User(user.clone()),
            holder_name: "벤치".into(),
            holder_info: "900101".into(),
            alias: "bench".into(),
            product_name: "bench demand deposit".into(),
            account_type: "1".into(),
            maturity_date: None,
            overdraft_limit: 0,
            opening_balance: 100_000_000,
        },
        now,
    )?;
    let nums = f.bank.register_accounts(
        &user,
        DEMO_CLIENT_ID,
        DEMO_CLIENT_USE_CODE,
        &[id],
        &["inquiry".into(), "transfer".into()],
        now,
    )?;
    let fintech_use_num = nums.first().context("no fintech_use_num")?.clone();
    let claims = Claims {
        client_id: DEMO_CLIENT_ID.into(),
        client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
        user_seq_no: Some(user),
        scopes: vec!["inquiry".into(), "transfer".into()],
        fintech_use_nums: vec![fintech_use_num.clone()],
    };
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let withdraw = || {
        let call = BankCall {
            caller: Some(&claims),
            now_millis: sfop_core::time::now_millis(),
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        };
        let request = WithdrawRequest {
            bank_tran_id: format!(
                "{DEMO_CLIENT_USE_CODE}U{:09}",
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
            fintech_use_num: fintech_use_num.clone(),
            tran_amt: 1,
            cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
            wd_print_content: "bench".into(),
            dps_print_content: "bench".into(),
            req_client_name: "벤치".into(),
            req_client_num: "BENCH0001".into(),
            transfer_purpose: "TR".into(),
            recv_client_name: String::new(),
            recv_client_bank_code: String::new(),
            recv_client_account_num: String::new(),
        };
        f.bank.withdraw(&call, &request)
    };
    withdraw().map_err(|e| anyhow::anyhow!("withdraw: {e:?}"))?;
    c.bench_function("ledger/withdraw_durable", |b| b.iter(withdraw));
    Ok(())
}

fn all(c: &mut Criterion) {
    for (name, bench) in [
        ("runtime", runtime as fn(&mut Criterion) -> Result<()>),
        ("auth", auth),
        ("ledger", ledger),
    ] {
        if let Err(e) = bench(c) {
            eprintln!("micro-benchmark group {name} could not run: {e:#}");
            std::process::exit(1);
        }
    }
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = all
}
criterion_main!(micro);
