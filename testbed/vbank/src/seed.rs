//! What a fresh virtual bank starts with, so a newcomer can call every API
//! at once (the README lists it).
//!
//! - The participant banks of [`crate::SEED_BANKS`], each with a treasury
//!   account holding [`crate::TREASURY_CAPITAL`]: every other balance is
//!   moved from a treasury by a booked transfer, so the ledger balances from
//!   the first posting.
//! - The demo institution [`DEMO_CLIENT_USE_CODE`] with its contract account
//!   `097` / [`DEMO_CONTRACT_ACCOUNT_NUM`] (pass phrase `NONE`).
//! - Three users with accounts and a month of history, and consents for the
//!   demo client [`DEMO_CLIENT_ID`].

use crate::model::{CONSENT_MILLIS, DAY_MILLIS, StoredBank, account_key};
use crate::{
    Limits, NewAccount, NewUser, Owner, Result, SEED_BANKS, TREASURY_ACCOUNT_NUM, TREASURY_CAPITAL,
    VirtualBank,
};

/// The OAuth client the seed registers consents for.
pub const DEMO_CLIENT_ID: &str = "sfop-demo-client";
/// The demo client's institution code.
pub const DEMO_CLIENT_USE_CODE: &str = "M202300001";
/// The demo institution's contract account at bank `097`.
pub const DEMO_CONTRACT_ACCOUNT_NUM: &str = "5000000000001";
/// What the demo institution's deposits must give as `wd_pass_phrase`.
pub const DEMO_PASS_PHRASE: &str = "NONE";

/// One seeded user: login, password, and what they have.
#[derive(Debug, Clone, Copy)]
pub struct SeedUser {
    pub user_seq_no: &'static str,
    pub name: &'static str,
    pub login_id: &'static str,
    pub password: &'static str,
    pub birth_date: &'static str,
}

/// The seeded users, in `user_seq_no` order.
pub const USERS: &[SeedUser] = &[
    SeedUser {
        user_seq_no: "1100000001",
        name: "홍길동",
        login_id: "hong",
        password: "hong1234",
        birth_date: "880101",
    },
    SeedUser {
        user_seq_no: "1100000002",
        name: "김영희",
        login_id: "kim",
        password: "kim1234",
        birth_date: "920315",
    },
    SeedUser {
        user_seq_no: "1100000003",
        name: "이철수",
        login_id: "lee",
        password: "lee1234",
        birth_date: "750720",
    },
];

/// Generous limits for the demo institution.
pub const DEMO_LIMITS: Limits = Limits {
    per_tran: 10_000_000,
    daily: 100_000_000,
    monthly: 1_000_000_000,
};

const SEED_VERSION: u32 = 1;

/// Seeds `bank` unless it already was. A store from before accounts existed
/// (banks only) keeps its banks and gets the rest.
pub(crate) fn ensure(bank: &VirtualBank, now_millis: u64) -> Result<()> {
    if bank.t.meta.get_json::<u32>("seeded")?.is_some() {
        return Ok(());
    }
    if !bank.t.users.is_empty() {
        return Err(crate::Error::Invalid(
            "an earlier first start was interrupted while seeding the virtual bank; \
             start over with an empty data dir"
                .into(),
        ));
    }
    for (code, name) in SEED_BANKS {
        if bank.t.banks.get(code.as_bytes())?.is_none() {
            bank.t.banks.insert_json(
                code,
                &StoredBank {
                    name: (*name).to_owned(),
                    available: true,
                },
            )?;
        }
    }
    // Genesis: the only money not moved by a posting.
    let mut capital = 0u64;
    for (code, name) in SEED_BANKS {
        let key = account_key(code, TREASURY_ACCOUNT_NUM);
        if bank.t.accounts.get(key.as_bytes())?.is_some() {
            continue;
        }
        bank.t.accounts.insert_json(
            &key,
            &crate::model::Account {
                bank_code: (*code).to_owned(),
                account_num: TREASURY_ACCOUNT_NUM.to_owned(),
                owner: Owner::Bank,
                holder_name: (*name).to_owned(),
                holder_info: String::new(),
                alias: "자금부".to_owned(),
                product_name: "본지점 계정".to_owned(),
                account_type: "1".to_owned(),
                issue_date: "20000101".to_owned(),
                maturity_date: None,
                state: crate::AccountState::Active,
                overdraft_limit: 0,
                balance: TREASURY_CAPITAL as i64,
                last_tran_date: None,
            },
        )?;
        capital += TREASURY_CAPITAL;
    }
    bank.t.meta.insert_json("capital", &capital)?;
    bank.flush()?;

    let days_ago =
        |d: u64, hour: u64| now_millis - d * DAY_MILLIS + hour * 3_600_000 - now_millis % 3_600_000;
    let start = days_ago(40, 0);

    // Companies: the demo institution, an employer, a merchant.
    bank.add_institution(
        DEMO_CLIENT_USE_CODE,
        "sfop 데모 핀테크",
        DEMO_PASS_PHRASE,
        DEMO_LIMITS,
        DEMO_LIMITS,
    )?;
    let company =
        |bank_code: &str, num: &str, owner: Owner, name: &str, info: &str, money: u64| NewAccount {
            bank_code: bank_code.into(),
            account_num: num.into(),
            owner,
            holder_name: name.into(),
            holder_info: info.into(),
            alias: name.into(),
            product_name: "기업자유예금".into(),
            account_type: "1".into(),
            maturity_date: None,
            overdraft_limit: 0,
            opening_balance: money,
        };
    bank.open_account(
        &company(
            "097",
            DEMO_CONTRACT_ACCOUNT_NUM,
            Owner::Institution(DEMO_CLIENT_USE_CODE.into()),
            "데모핀테크(주)",
            "2208112345",
            100_000_000,
        ),
        start,
    )?;
    bank.add_contract_account(DEMO_CLIENT_USE_CODE, "097", DEMO_CONTRACT_ACCOUNT_NUM)?;
    let employer = bank.open_account(
        &company(
            "003",
            "3000000000001",
            Owner::Company,
            "(주)가나다상사",
            "1048112345",
            500_000_000,
        ),
        start,
    )?;
    let merchant = bank.open_account(
        &company(
            "004",
            "4000000000001",
            Owner::Company,
            "(주)편의점",
            "1208154321",
            10_000_000,
        ),
        start,
    )?;

    let mut user_nos = Vec::new();
    for u in USERS {
        let no = bank.add_user(&NewUser {
            name: u.name.into(),
            birth_date: u.birth_date.into(),
            login_id: u.login_id.into(),
            password: u.password.into(),
            wd_per_tran: 2_000_000,
            wd_daily: 5_000_000,
        })?;
        user_nos.push(no);
    }
    let personal =
        |bank_code: &str, num: &str, user: usize, alias: &str, product: &str, kind: &str| {
            let u = &USERS[user];
            NewAccount {
                bank_code: bank_code.into(),
                account_num: num.into(),
                owner: Owner::User(user_nos[user].clone()),
                holder_name: u.name.into(),
                holder_info: u.birth_date.into(),
                alias: alias.into(),
                product_name: product.into(),
                account_type: kind.into(),
                maturity_date: None,
                overdraft_limit: 0,
                opening_balance: 0,
            }
        };

    // 홍길동: a salary account with a month of history, savings, an overdraft line.
    let hong_main = bank.open_account(
        &NewAccount {
            opening_balance: 500_000,
            ..personal(
                "097",
                "1101234567890",
                0,
                "생활비 통장",
                "오픈 자유입출금",
                "1",
            )
        },
        start,
    )?;
    let hong_savings = bank.open_account(
        &NewAccount {
            opening_balance: 5_000_000,
            maturity_date: Some(
                crate::model::dtime(now_millis + CONSENT_MILLIS, 540)[..8].to_owned(),
            ),
            ..personal("004", "2200012345678", 0, "적금", "KB 정기적금", "2")
        },
        start,
    )?;
    let hong_credit = bank.open_account(
        &NewAccount {
            overdraft_limit: 2_000_000,
            ..personal(
                "088",
                "3300098765432",
                0,
                "마이너스 통장",
                "신한 마이너스통장",
                "1",
            )
        },
        start,
    )?;
    bank.book_transfer(
        &hong_credit,
        &merchant,
        300_000,
        days_ago(35, 13),
        "카드",
        "편의점 결제",
    )?;
    for (i, day) in (1..=36).rev().enumerate() {
        let at = days_ago(day, 9 + (i as u64 % 9));
        if day % 30 == 25 {
            bank.book_transfer(
                &employer,
                &hong_main,
                3_000_000,
                at,
                "급여",
                "가나다상사 급여",
            )?;
        } else {
            let amount = 4_000 + (i as u64 * 1_300) % 27_000;
            bank.book_transfer(&hong_main, &merchant, amount, at, "카드", "편의점 결제")?;
        }
    }

    // 김영희: a salary account, and an account her bank suspended.
    let kim_main = bank.open_account(
        &NewAccount {
            opening_balance: 800_000,
            ..personal("081", "4400011112222", 1, "주거래", "하나 급여통장", "1")
        },
        start,
    )?;
    bank.book_transfer(
        &employer,
        &kim_main,
        2_500_000,
        days_ago(5, 10),
        "급여",
        "가나다상사 급여",
    )?;
    let kim_frozen = bank.open_account(
        &NewAccount {
            opening_balance: 150_000,
            ..personal(
                "020",
                "5500033334444",
                1,
                "예전 통장",
                "우리 자유입출금",
                "1",
            )
        },
        start,
    )?;
    bank.set_account_state(&kim_frozen, crate::AccountState::Suspended)?;

    // 이철수: one account, and one he closed.
    let lee_main = bank.open_account(
        &NewAccount {
            opening_balance: 2_500_000,
            ..personal("011", "3020000111122", 2, "농협 통장", "NH 자유입출금", "1")
        },
        start,
    )?;
    let lee_closed = bank.open_account(
        &personal(
            "003",
            "1230000099999",
            2,
            "해지 통장",
            "IBK 자유입출금",
            "1",
        ),
        start,
    )?;
    bank.set_account_state(&lee_closed, crate::AccountState::Closed)?;

    // Consents for the demo client, given a day ago.
    let consent_at = days_ago(1, 0);
    let both = ["inquiry".to_owned(), "transfer".to_owned()];
    let inquiry_only = ["inquiry".to_owned()];
    bank.register_accounts(
        &user_nos[0],
        DEMO_CLIENT_ID,
        DEMO_CLIENT_USE_CODE,
        &[hong_main, hong_credit],
        &both,
        consent_at,
    )?;
    bank.register_accounts(
        &user_nos[0],
        DEMO_CLIENT_ID,
        DEMO_CLIENT_USE_CODE,
        &[hong_savings],
        &inquiry_only,
        consent_at,
    )?;
    bank.register_accounts(
        &user_nos[1],
        DEMO_CLIENT_ID,
        DEMO_CLIENT_USE_CODE,
        &[kim_main, kim_frozen],
        &both,
        consent_at,
    )?;
    bank.register_accounts(
        &user_nos[2],
        DEMO_CLIENT_ID,
        DEMO_CLIENT_USE_CODE,
        &[lee_main],
        &inquiry_only,
        consent_at,
    )?;

    bank.t.meta.insert_json("seeded", &SEED_VERSION)?;
    bank.flush()
}
