//! The journey of a fintech payment app on the open-banking platform, as
//! plain HTTP calls any app can make (no platform crate involved):
//!
//! 1. **Authorize**: the user signs in at the platform, picks accounts and
//!    consents (`/oauth/2.0/authorize`, code + PKCE); the app exchanges the
//!    code for a user token (`/oauth/2.0/token`).
//! 2. **Accounts**: who the user is and which accounts they registered
//!    (`/v2.0/user/me`, `/v2.0/account/list`; scope `login`).
//! 3. **Balance and history** of the paying account
//!    (`/v2.0/account/balance/fin_num`, `/v2.0/account/transaction_list/fin_num`;
//!    scope `inquiry`).
//! 4. **Pay by QR**: the shop's QR code names an amount; the app withdraws it
//!    from the user's account into its contract account
//!    (`/v2.0/transfer/withdraw/fin_num`; scope `transfer`).
//! 5. **Refund**: the app pays the amount back from its contract account with
//!    its institution token (`/v2.0/transfer/deposit/fin_num`; client
//!    credentials, scope `oob`).
//! 6. **Reconcile**: the final state of both transfers by their
//!    `bank_tran_id` (`/v2.0/transfer/result`; scope `oob`).
//!
//! [`run`] does all of it and prints each step; the binary (`src/main.rs`)
//! parses flags and calls it; the tests call it against an in-process platform.

pub mod http;
pub mod oauth;

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::http::{Platform, decode};

/// The QR code the example "scans" unless `--qr` names another.
pub const DEFAULT_QR: &str =
    "sfop-pay:v1?merchant=(주)편의점&bank=004&account=4000000000001&item=커피 2잔&amount=4500";

/// The demo institution's contract account in the virtual bank's seed data.
pub const DEMO_CONTRACT_ACCOUNT: &str = "5000000000001";

/// The app's registration: what `demo-client.json` in the platform's data dir
/// holds for the seeded demo app (a real app gets these when it registers).
#[derive(Clone)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: String,
    /// Institution code, `M` + 9 digits: the prefix of every `bank_tran_id`.
    pub client_use_code: String,
    pub redirect_uri: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("client_use_code", &self.client_use_code)
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

impl AppCredentials {
    /// Reads `demo-client.json` (or a file of the same shape).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading the app's credentials {} (the platform writes the demo app's there \
                 on its first start: run `cargo xtask serve`, or pass --data-dir)",
                path.display()
            )
        })?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let field = |k: &str| -> Result<String> {
            match v[k].as_str() {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => bail!("{} has no {k:?}", path.display()),
            }
        };
        let app = Self {
            client_id: field("client_id")?,
            client_secret: field("client_secret")?,
            client_use_code: field("client_use_code")?,
            redirect_uri: field("redirect_uri")?,
        };
        let code = app.client_use_code.as_bytes();
        if code.len() != 10 || code[0] != b'M' || !code[1..].iter().all(u8::is_ascii_digit) {
            bail!(
                "{}: client_use_code {:?} is not M + 9 digits",
                path.display(),
                app.client_use_code
            );
        }
        Ok(app)
    }
}

/// Everything the journey needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The platform's base URL, e.g. `https://127.0.0.1:8443`.
    pub url: String,
    /// The certificate to trust for `https` (the platform's self-signed one).
    pub cacert: std::path::PathBuf,
    pub app: AppCredentials,
    /// The bank user signing in on the authorize page.
    pub login_id: String,
    pub password: String,
    /// The scanned QR code (see [`Qr`]).
    pub qr: String,
    /// The app's contract account at the bank, where payments land.
    pub contract_account: String,
    /// The contract account's withdrawal pass phrase (for refunds).
    pub wd_pass_phrase: String,
    /// The account to pay from (bank code or fintech_use_num); by default
    /// the demand-deposit account with the highest balance.
    pub pay_from: Option<String>,
}

/// A shop's payment QR code:
/// `sfop-pay:v1?merchant=NAME&amount=WON[&item=TEXT][&bank=CODE&account=NUM]`
/// (values may be percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qr {
    pub merchant: String,
    pub item: String,
    pub amount: u64,
    /// The merchant's bank and account, passed on as the final recipient.
    pub bank_code: String,
    pub account_num: String,
}

impl FromStr for Qr {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let query = text.strip_prefix("sfop-pay:v1?").with_context(|| {
            format!("QR code {text:?} does not start with \"sfop-pay:v1?\"; example: {DEFAULT_QR}")
        })?;
        let mut qr = Qr {
            merchant: String::new(),
            item: String::new(),
            amount: 0,
            bank_code: String::new(),
            account_num: String::new(),
        };
        let mut amount = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("QR code field {pair:?} is not key=value"))?;
            let v = decode(v);
            match k {
                "merchant" => qr.merchant = v,
                "item" => qr.item = v,
                "amount" => amount = Some(v),
                "bank" => qr.bank_code = v,
                "account" => qr.account_num = v,
                _ => {
                    bail!("QR code field {k:?} is unknown (merchant, amount, item, bank, account)")
                }
            }
        }
        let amount = amount.context("QR code has no amount")?;
        qr.amount = match amount.parse::<u64>() {
            Ok(a) if a > 0 && amount.len() <= 12 && amount.bytes().all(|b| b.is_ascii_digit()) => a,
            _ => bail!("QR code amount {amount:?} must be 1 to 12 digits, more than 0 won"),
        };
        let chars = |s: &str| s.chars().count();
        if qr.merchant.is_empty() || chars(&qr.merchant) > 20 {
            bail!(
                "QR code merchant {:?} must be 1 to 20 characters",
                qr.merchant
            );
        }
        if qr.item.is_empty() {
            qr.item.clone_from(&qr.merchant);
        }
        if chars(&qr.item) > 20 {
            bail!("QR code item {:?} must be at most 20 characters", qr.item);
        }
        if !qr.bank_code.is_empty()
            && (qr.bank_code.len() != 3 || !qr.bank_code.bytes().all(|b| b.is_ascii_digit()))
        {
            bail!("QR code bank {:?} must be 3 digits", qr.bank_code);
        }
        if qr.account_num.len() > 16 || !qr.account_num.bytes().all(|b| b.is_ascii_digit()) {
            bail!(
                "QR code account {:?} must be at most 16 digits",
                qr.account_num
            );
        }
        if qr.bank_code.is_empty() != qr.account_num.is_empty() {
            bail!("QR code bank and account go together");
        }
        Ok(qr)
    }
}

/// What the journey did, for callers that check it.
#[derive(Debug, Clone)]
pub struct Journey {
    pub user_seq_no: String,
    pub user_name: String,
    /// The registered accounts, as `/v2.0/account/list` gave them.
    pub accounts: Vec<Value>,
    /// The account that paid and was refunded.
    pub fintech_use_num: String,
    pub balance_before: i64,
    pub balance_after_payment: i64,
    pub balance_after_refund: i64,
    /// History items shown (the newest first).
    pub history: Vec<Value>,
    pub payment: Value,
    pub refund: Value,
    /// `/v2.0/transfer/result` items for the payment and for the refund.
    pub payment_result: Value,
    pub refund_result: Value,
}

/// Runs the whole journey against the platform at `options.url`, printing
/// each step to `out`.
pub async fn run(options: &Options, out: &mut (dyn Write + Send)) -> Result<Journey> {
    let qr: Qr = options.qr.parse()?;
    let platform = Platform::new(&options.url, &options.cacert)?;
    let app = &options.app;
    let mut ids = TranIds::new(&app.client_use_code)?;
    writeln!(
        out,
        "sfop payment app example: {} at {}\n",
        app.client_id,
        platform.url()
    )?;

    step(
        out,
        1,
        "Connect the user's bank accounts (OAuth 2.0 + PKCE)",
    )?;
    let user = oauth::authorize_user(
        &platform,
        app,
        &options.login_id,
        &options.password,
        "login inquiry transfer",
        out,
    )
    .await
    .context("step 1, authorize")?;
    let token = user.access_token.as_str();

    step(
        out,
        2,
        "Who is this and which accounts? (/v2.0/user/me, /v2.0/account/list)",
    )?;
    let me = platform
        .api(
            "GET",
            &format!("/v2.0/user/me?user_seq_no={}", user.user_seq_no),
            token,
            None,
        )
        .await
        .context("step 2, user info")?;
    let user_name = text(&me, "user_name")?;
    writeln!(
        out,
        "   Hello, {user_name} (user_seq_no {}).",
        user.user_seq_no
    )?;
    let list = platform
        .api(
            "GET",
            &format!(
                "/v2.0/account/list?user_seq_no={}&include_cancel_yn=N&sort_order=A",
                user.user_seq_no
            ),
            token,
            None,
        )
        .await
        .context("step 2, account list")?;
    let accounts = list["res_list"]
        .as_array()
        .cloned()
        .context("account list without res_list")?;
    writeln!(
        out,
        "   {:<24}  {:<14}  {:<4}  {:<7}  {:<8}  bank",
        "fintech_use_num", "account", "type", "inquiry", "transfer"
    )?;
    for a in &accounts {
        writeln!(
            out,
            "   {:<24}  {:<14}  {:<4}  {:<7}  {:<8}  {} {}",
            a["fintech_use_num"].as_str().unwrap_or_default(),
            a["account_num_masked"].as_str().unwrap_or_default(),
            a["account_type"].as_str().unwrap_or_default(),
            a["inquiry_agree_yn"].as_str().unwrap_or_default(),
            a["transfer_agree_yn"].as_str().unwrap_or_default(),
            a["bank_name"].as_str().unwrap_or_default(),
            a["account_alias"].as_str().unwrap_or_default(),
        )?;
    }

    step(out, 3, "Balances, and the history of the paying account")?;
    let mut balances = Vec::new();
    for a in accounts.iter().filter(|a| a["inquiry_agree_yn"] == "Y") {
        let fin = text(a, "fintech_use_num")?;
        let answer = balance_of(&platform, token, &fin, &mut ids)
            .await
            .context("step 3, balance")?;
        let masked = a["account_num_masked"].as_str().unwrap_or_default();
        writeln!(out, "   {}", describe_balance(&answer, masked))?;
        balances.push((a, balance_amt(&answer)?));
    }
    let (paying, balance_before) = paying_account(&balances, options.pay_from.as_deref())?;
    let fin = text(paying, "fintech_use_num")?;
    writeln!(
        out,
        "   The user pays from {} {} ({fin}).",
        paying["bank_name"].as_str().unwrap_or_default(),
        paying["account_num_masked"].as_str().unwrap_or_default()
    )?;
    let now = kst_now()?;
    let from = kst_date_days_before(90)?;
    let history = platform
        .api(
            "GET",
            &format!(
                "/v2.0/account/transaction_list/fin_num?bank_tran_id={}&fintech_use_num={fin}\
                 &inquiry_type=A&inquiry_base=D&from_date={from}&to_date={}&sort_order=D\
                 &tran_dtime={now}&befor_inquiry_trace_info=",
                ids.next()?,
                &now[..8]
            ),
            token,
            None,
        )
        .await
        .context("step 3, transaction list")?;
    let items: Vec<Value> = history["res_list"]
        .as_array()
        .map(|l| l.iter().take(5).cloned().collect())
        .unwrap_or_default();
    writeln!(
        out,
        "   {} postings since {from}; the newest {}:",
        history["total_record_cnt"].as_str().unwrap_or("?"),
        items.len()
    )?;
    for t in &items {
        writeln!(
            out,
            "     {} {}  {}  {:>12}  balance {:>12}  {}",
            t["tran_date"].as_str().unwrap_or_default(),
            t["tran_time"].as_str().unwrap_or_default(),
            t["inout_type"].as_str().unwrap_or_default(),
            won(t["tran_amt"].as_str().unwrap_or_default()),
            won(t["after_balance_amt"].as_str().unwrap_or_default()),
            t["print_content"].as_str().unwrap_or_default(),
        )?;
    }

    step(out, 4, "Pay by QR (/v2.0/transfer/withdraw/fin_num)")?;
    writeln!(out, "   The user scans the shop's QR code: {}", options.qr)?;
    writeln!(
        out,
        "   → {} for {}, {}. The user confirms.",
        won(&qr.amount.to_string()),
        qr.item,
        qr.merchant
    )?;
    let payment_id = ids.next()?;
    let payment = platform
        .api(
            "POST",
            "/v2.0/transfer/withdraw/fin_num",
            token,
            Some(&json!({
                "bank_tran_id": payment_id,
                "cntr_account_type": "N",
                "cntr_account_num": options.contract_account,
                "dps_print_content": truncate(&user_name, 20),
                "fintech_use_num": fin,
                "wd_print_content": qr.item,
                "tran_amt": qr.amount.to_string(),
                "tran_dtime": kst_now()?,
                "req_client_name": truncate(&user_name, 20),
                "req_client_fintech_use_num": fin,
                "req_client_num": user.user_seq_no,
                "transfer_purpose": "TR",
                "recv_client_name": qr.merchant,
                "recv_client_bank_code": qr.bank_code,
                "recv_client_account_num": qr.account_num,
            })),
        )
        .await
        .context("step 4, withdraw")?;
    writeln!(
        out,
        "   Paid: bank_tran_id {payment_id}, {} from {}'s account into {} {} \
         (withdrawal limit left today: {}).",
        won(payment["tran_amt"].as_str().unwrap_or_default()),
        payment["account_holder_name"].as_str().unwrap_or_default(),
        payment["dps_bank_name"].as_str().unwrap_or_default(),
        payment["dps_account_num_masked"]
            .as_str()
            .unwrap_or_default(),
        won(payment["wd_limit_remain_amt"].as_str().unwrap_or_default()),
    )?;
    let balance_after_payment = balance(&platform, token, paying, &mut ids, out)
        .await
        .context("step 4, balance")?;

    step(
        out,
        5,
        "Refund the payment (/v2.0/transfer/deposit/fin_num)",
    )?;
    writeln!(
        out,
        "   The shop cancels the order. A refund is the app's own act, so it uses its\n   \
         institution token (client_credentials, scope oob) from its server."
    )?;
    let oob = oauth::institution_token(&platform, app)
        .await
        .context("step 5, institution token")?;
    let refund_id = ids.next()?;
    let refund = platform
        .api(
            "POST",
            "/v2.0/transfer/deposit/fin_num",
            &oob,
            Some(&json!({
                "cntr_account_type": "N",
                "cntr_account_num": options.contract_account,
                "wd_pass_phrase": options.wd_pass_phrase,
                "wd_print_content": truncate(&format!("환불 {user_name}"), 20),
                "name_check_option": "off",
                "tran_dtime": kst_now()?,
                "req_cnt": "1",
                "req_list": [{
                    "tran_no": "1",
                    "bank_tran_id": refund_id,
                    "fintech_use_num": fin,
                    "print_content": truncate(&format!("환불 {}", qr.merchant), 20),
                    "tran_amt": qr.amount.to_string(),
                    "req_client_name": truncate(&user_name, 20),
                    "req_client_fintech_use_num": fin,
                    "req_client_num": user.user_seq_no,
                    "transfer_purpose": "TR",
                }],
            })),
        )
        .await
        .context("step 5, deposit")?;
    let refunded = refund["res_list"]
        .get(0)
        .cloned()
        .context("deposit answer without res_list")?;
    if refunded["bank_rsp_code"] != "000" {
        bail!("step 5: the bank did not book the refund: {refunded}");
    }
    writeln!(
        out,
        "   Refunded: bank_tran_id {refund_id}, {} into {} {}.",
        won(refunded["tran_amt"].as_str().unwrap_or_default()),
        refunded["bank_name"].as_str().unwrap_or_default(),
        refunded["account_num_masked"].as_str().unwrap_or_default(),
    )?;
    let balance_after_refund = balance(&platform, token, paying, &mut ids, out)
        .await
        .context("step 5, balance")?;

    step(
        out,
        6,
        "Reconcile: transfer results (/v2.0/transfer/result)",
    )?;
    let payment_result = transfer_result(
        &platform,
        &oob,
        "1",
        &payment_id,
        text(&payment, "bank_tran_date")?.as_str(),
        qr.amount,
    )
    .await
    .context("step 6, result of the payment")?;
    let refund_result = transfer_result(
        &platform,
        &oob,
        "2",
        &refund_id,
        text(&refunded, "bank_tran_date")?.as_str(),
        qr.amount,
    )
    .await
    .context("step 6, result of the refund")?;
    for (what, r) in [("payment", &payment_result), ("refund", &refund_result)] {
        writeln!(
            out,
            "   {what:<8} {}: {} / bank {} {}, {}",
            r["bank_tran_id"].as_str().unwrap_or_default(),
            r["rsp_code"].as_str().unwrap_or_default(),
            r["bank_rsp_code"].as_str().unwrap_or_default(),
            r["bank_rsp_message"].as_str().unwrap_or_default(),
            won(r["tran_amt"].as_str().unwrap_or_default()),
        )?;
    }
    writeln!(
        out,
        "\nDone: balance {} → {} (paid) → {} (refunded).",
        won(&balance_before.to_string()),
        won(&balance_after_payment.to_string()),
        won(&balance_after_refund.to_string()),
    )?;
    Ok(Journey {
        user_seq_no: user.user_seq_no,
        user_name,
        accounts,
        fintech_use_num: fin,
        balance_before,
        balance_after_payment,
        balance_after_refund,
        history: items,
        payment,
        refund,
        payment_result,
        refund_result,
    })
}

/// The account to pay from: `--pay-from` (a bank code or fintech_use_num),
/// else the demand-deposit account (type 1) with the most money. (A real app
/// lets the user pick.)
fn paying_account<'a>(
    balances: &[(&'a Value, i64)],
    pay_from: Option<&str>,
) -> Result<(&'a Value, i64)> {
    let payable = |a: &Value| a["transfer_agree_yn"] == "Y";
    let found = match pay_from {
        Some(wanted) => balances
            .iter()
            .filter(|(a, _)| payable(a))
            .find(|(a, _)| a["fintech_use_num"] == wanted || a["bank_code_std"] == wanted)
            .with_context(|| {
                format!(
                    "--pay-from {wanted}: no registered account with that bank code or \
                     fintech_use_num allows payments (transfer) and inquiry"
                )
            })?,
        None => balances
            .iter()
            .filter(|(a, _)| payable(a) && a["account_type"] == "1")
            .max_by_key(|(_, amount)| *amount)
            .context(
                "no registered demand-deposit account allows payments (transfer) and inquiry",
            )?,
    };
    Ok(*found)
}

fn step(out: &mut (dyn Write + Send), n: u32, title: &str) -> Result<()> {
    writeln!(out, "\n{n}. {title}")?;
    Ok(())
}

async fn balance_of(
    platform: &Platform,
    token: &str,
    fin: &str,
    ids: &mut TranIds,
) -> Result<Value> {
    platform
        .api(
            "GET",
            &format!(
                "/v2.0/account/balance/fin_num?bank_tran_id={}&fintech_use_num={fin}&tran_dtime={}",
                ids.next()?,
                kst_now()?
            ),
            token,
            None,
        )
        .await
}

fn balance_amt(answer: &Value) -> Result<i64> {
    let amount = text(answer, "balance_amt")?;
    amount
        .parse()
        .with_context(|| format!("balance_amt {amount:?} is not a number"))
}

/// `bank masked-number (product): balance (available …)`.
fn describe_balance(b: &Value, account_num_masked: &str) -> String {
    format!(
        "{} {account_num_masked} ({}): {} (available {})",
        b["bank_name"].as_str().unwrap_or_default(),
        b["product_name"].as_str().unwrap_or_default(),
        won(b["balance_amt"].as_str().unwrap_or_default()),
        won(b["available_amt"].as_str().unwrap_or_default()),
    )
}

/// Shows and returns the balance of `fin`.
async fn balance(
    platform: &Platform,
    token: &str,
    account: &Value,
    ids: &mut TranIds,
    out: &mut (dyn Write + Send),
) -> Result<i64> {
    let fin = text(account, "fintech_use_num")?;
    let answer = balance_of(platform, token, &fin, ids).await?;
    let masked = account["account_num_masked"].as_str().unwrap_or_default();
    writeln!(out, "   Balance: {}", describe_balance(&answer, masked))?;
    balance_amt(&answer)
}

/// The one result item of transfer `id` (`check_type` 1 withdraw, 2 deposit);
/// an error unless the bank reports it done.
async fn transfer_result(
    platform: &Platform,
    oob: &str,
    check_type: &str,
    id: &str,
    date: &str,
    amount: u64,
) -> Result<Value> {
    let answer = platform
        .api(
            "POST",
            "/v2.0/transfer/result",
            oob,
            Some(&json!({
                "check_type": check_type,
                "tran_dtime": kst_now()?,
                "req_cnt": "1",
                "req_list": [{
                    "tran_no": "1",
                    "org_bank_tran_id": id,
                    "org_bank_tran_date": date,
                    "org_tran_amt": amount.to_string(),
                }],
            })),
        )
        .await?;
    let item = answer["res_list"]
        .get(0)
        .cloned()
        .context("transfer result without res_list")?;
    if item["rsp_code"] != "A0000" || item["bank_rsp_code"] != "000" {
        bail!("transfer {id} is not reported done: {item}");
    }
    Ok(item)
}

fn text(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the answer has no {key}: {v}"))
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// `-1234567` → `-₩1,234,567`.
pub fn won(amount: &str) -> String {
    let (sign, digits) = match amount.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", amount),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return amount.to_owned();
    }
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}₩{grouped}")
}

/// `bank_tran_id`s of the institution: code + `U` + 9 digits, unique per day.
/// Random, so separate runs of the example on one day do not collide.
struct TranIds {
    prefix: String,
    next: u32,
}

impl TranIds {
    fn new(client_use_code: &str) -> Result<Self> {
        let r = u32::from_le_bytes(random_bytes::<4>()?);
        Ok(Self {
            prefix: format!("{client_use_code}U"),
            // Room for a run's few ids below 10^9.
            next: r % 999_000_000,
        })
    }

    fn next(&mut self) -> Result<String> {
        self.next += 1;
        if self.next >= 1_000_000_000 {
            bail!("bank_tran_id counter exhausted");
        }
        Ok(format!("{}{:09}", self.prefix, self.next))
    }
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(b)
}

/// Korea Standard Time is UTC+9, all year.
const KST: jiff::tz::Offset = jiff::tz::Offset::constant(9);

/// `tran_dtime`: `YYYYMMDDhhmmss`, Korea time.
fn kst_now() -> Result<String> {
    Ok(dtime(KST.to_datetime(jiff::Timestamp::now())))
}

/// `YYYYMMDD`, Korea time, `days` ago.
fn kst_date_days_before(days: u64) -> Result<String> {
    let today = KST.to_datetime(jiff::Timestamp::now()).date();
    let span = jiff::Span::new().try_days(i64::try_from(days)?)?;
    let day = today.checked_sub(span)?;
    Ok(format!(
        "{:04}{:02}{:02}",
        day.year(),
        day.month(),
        day.day()
    ))
}

/// A wall-clock time as `YYYYMMDDhhmmss`.
fn dtime(t: jiff::civil::DateTime) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_qr_code_parses() -> Result<()> {
        let qr: Qr = DEFAULT_QR.parse()?;
        assert_eq!(
            qr,
            Qr {
                merchant: "(주)편의점".into(),
                item: "커피 2잔".into(),
                amount: 4500,
                bank_code: "004".into(),
                account_num: "4000000000001".into(),
            }
        );
        let plain: Qr = "sfop-pay:v1?merchant=%ED%8E%B8&amount=1".parse()?;
        assert_eq!((plain.item.as_str(), plain.amount), ("편", 1));
        Ok(())
    }

    #[test]
    fn bad_qr_codes_say_what_is_wrong() {
        let err = |s: &str| {
            s.parse::<Qr>()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("https://evil.example").contains("does not start with"));
        assert!(err("sfop-pay:v1?merchant=x").contains("no amount"));
        assert!(err("sfop-pay:v1?merchant=x&amount=0").contains("more than 0"));
        assert!(err("sfop-pay:v1?merchant=x&amount=-5").contains("amount"));
        assert!(err("sfop-pay:v1?merchant=x&amount=1234567890123").contains("12 digits"));
        assert!(err("sfop-pay:v1?amount=5").contains("merchant"));
        assert!(err("sfop-pay:v1?merchant=x&amount=5&tip=1").contains("\"tip\" is unknown"));
        assert!(err("sfop-pay:v1?merchant=x&amount=5&bank=04&account=1").contains("3 digits"));
        assert!(err("sfop-pay:v1?merchant=x&amount=5&bank=004").contains("go together"));
        assert!(err("sfop-pay:v1?merchant=x&amount").contains("key=value"));
        let long = format!("sfop-pay:v1?merchant=x&amount=5&item={}", "가".repeat(21));
        assert!(err(&long).contains("at most 20"));
    }

    #[test]
    fn the_paying_account_is_chosen_or_named() -> Result<()> {
        let account = |fin: &str, bank: &str, kind: &str, transfer: &str| json!({ "fintech_use_num": fin, "bank_code_std": bank, "account_type": kind, "transfer_agree_yn": transfer });
        let savings = account("F1", "004", "2", "Y");
        let overdraft = account("F2", "088", "1", "Y");
        let main = account("F3", "097", "1", "Y");
        let inquiry_only = account("F4", "081", "1", "N");
        let balances = [
            (&savings, 5_000_000),
            (&overdraft, -300_000),
            (&main, 2_960_300),
            (&inquiry_only, 9_000_000),
        ];
        let chosen = |pay_from| {
            paying_account(&balances, pay_from).map(|(a, b)| (a["fintech_use_num"].clone(), b))
        };
        assert_eq!(chosen(None)?, (json!("F3"), 2_960_300));
        assert_eq!(chosen(Some("088"))?, (json!("F2"), -300_000));
        assert_eq!(chosen(Some("F1"))?, (json!("F1"), 5_000_000));
        assert!(chosen(Some("081")).is_err(), "no transfer consent");
        assert!(chosen(Some("999")).is_err());
        assert!(
            paying_account(&balances[..1], None).is_err(),
            "savings only"
        );
        Ok(())
    }

    #[test]
    fn dates_are_civil() -> Result<()> {
        let utc = |secs: i64| -> Result<String> {
            Ok(dtime(
                jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::from_second(secs)?),
            ))
        };
        assert_eq!(utc(0)?, "19700101000000");
        assert_eq!(utc(951_782_400)?, "20000229000000");
        assert_eq!(utc(1_795_305_600 + 3_723)?, "20261122010203");
        assert_eq!(utc(4_102_444_799)?, "20991231235959");
        // 2026-12-31T15:00:00Z is New Year in Korea.
        let new_year = KST.to_datetime(jiff::Timestamp::from_second(1_798_729_200)?);
        assert_eq!(dtime(new_year), "20270101000000");
        Ok(())
    }

    #[test]
    fn amounts_read_as_won() {
        assert_eq!(won("4500"), "₩4,500");
        assert_eq!(won("-300000"), "-₩300,000");
        assert_eq!(won("100"), "₩100");
        assert_eq!(won("1000000"), "₩1,000,000");
        assert_eq!(won(""), "");
    }

    #[test]
    fn tran_ids_have_the_institution_format() -> Result<()> {
        let mut ids = TranIds::new("M202300001")?;
        let (a, b) = (ids.next()?, ids.next()?);
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 20);
            assert!(id.starts_with("M202300001U"));
            assert!(id[11..].bytes().all(|b| b.is_ascii_digit()));
        }
        Ok(())
    }

    #[test]
    fn credentials_files_are_checked() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("demo-client.json");
        let err = |p: &Path| {
            AppCredentials::load(p)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(err(&path).contains("cargo xtask serve"));
        std::fs::write(&path, "not json")?;
        assert!(err(&path).contains("is not JSON"));
        std::fs::write(
            &path,
            r#"{"client_id":"a","client_secret":"b","client_use_code":"X1","redirect_uri":"c"}"#,
        )?;
        assert!(err(&path).contains("M + 9 digits"));
        std::fs::write(
            &path,
            r#"{"client_id":"a","client_secret":"b","client_use_code":"M202300001"}"#,
        )?;
        assert!(err(&path).contains("\"redirect_uri\""));
        std::fs::write(
            &path,
            r#"{"client_id":"a","client_secret":"b","client_use_code":"M202300001","redirect_uri":"c"}"#,
        )?;
        assert_eq!(AppCredentials::load(&path)?.client_use_code, "M202300001");
        Ok(())
    }
}
