//! The virtual bank's consents on the cluster (V6, ADR 0030): fintech
//! numbers issued once per (institution, user, account) whichever node
//! registers, consents kept or replaced per scope, unlink and cancel seen
//! by every node, and the seeded consents copied once.

use anyhow::{Context, Result, bail};
use sfop_store_pg::{
    Cancelled, Cluster, ConsentRow, Error, FintechNum, NewConsents, RegistrationRow, Scope,
    SeedAccount, TranKey,
};

use super::{database, raw};

const INSTITUTION: &str = "M202300001";
const DAY: i64 = 86_400_000;

/// The number of the `seq`-th issuance to `code` (the bank's shape: `1`,
/// the institution's nine digits, 13 digits of sequence, a check digit).
fn number(code: &str, seq: i64) -> Option<String> {
    Some(format!("1{}{seq:013}0", code.get(1..)?))
}

fn consent(dtime: &str, expires_millis: i64) -> Option<ConsentRow> {
    Some(ConsentRow {
        agreed_dtime: dtime.to_owned(),
        expires_millis,
        withdrawn: false,
    })
}

async fn accounts(node: &Cluster, ids: &[&str]) -> Result<()> {
    let seed: Vec<SeedAccount> = ids
        .iter()
        .map(|id| SeedAccount {
            id: (*id).to_owned(),
            bank_code: id[..3].to_owned(),
            holder_name: "홍길동".into(),
            balance: 1_000,
            overdraft_limit: 0,
        })
        .collect();
    node.seed_accounts(&seed).await?;
    Ok(())
}

/// What `user` registering `accounts` with `client` of `code` gives now.
struct Ask<'a> {
    user: &'a str,
    client: &'a str,
    code: &'a str,
    inquiry: bool,
    transfer: bool,
    now: i64,
}

impl Ask<'_> {
    async fn on(&self, node: &Cluster, accounts: &[String]) -> sfop_store_pg::Result<Vec<String>> {
        let dtime = format!("{:014}", self.now / 1000);
        let code = self.code.to_owned();
        node.register_consents(
            &NewConsents {
                user_seq_no: self.user,
                client_id: self.client,
                client_use_code: self.code,
                accounts,
                now_dtime: &dtime,
                inquiry: if self.inquiry {
                    consent(&dtime, self.now + 365 * DAY)
                } else {
                    None
                },
                transfer: if self.transfer {
                    consent(&dtime, self.now + 365 * DAY)
                } else {
                    None
                },
            },
            move |seq| number(&code, seq),
        )
        .await
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_given_on_one_node_are_every_nodes() -> Result<()> {
    let Some(url) = database("consents").await? else {
        return Ok(());
    };
    let (a, b) = (
        Cluster::connect(&url, 8).await?,
        Cluster::connect(&url, 8).await?,
    );
    accounts(&a, &["097/1", "004/2", "088/3", "081/4"]).await?;
    let now = 1_800_000_000_000;
    let both = Ask {
        user: "1100000001",
        client: "app-a",
        code: INSTITUTION,
        inquiry: true,
        transfer: true,
        now,
    };

    // Registered on A: numbers in the order asked, read back on B.
    let nums = both.on(&a, &ids(&["004/2", "097/1"])).await?;
    assert_eq!(nums.len(), 2);
    assert_ne!(nums[0], nums[1]);
    let (link, reg) = b.fintech_num(&nums[1], "app-a").await?.context("on B")?;
    assert_eq!(
        link,
        FintechNum {
            fintech_use_num: nums[1].clone(),
            client_use_code: INSTITUTION.into(),
            user_seq_no: "1100000001".into(),
            account: "097/1".into(),
        }
    );
    let reg = reg.context("registered with app-a")?;
    assert_eq!(reg.inquiry, consent(&reg.registered_dtime, now + 365 * DAY));
    assert_eq!(reg.transfer, reg.inquiry);
    // Another client of the caller: the number, no registration.
    let (_, none) = b
        .fintech_num(&nums[1], "app-b")
        .await?
        .context("the number")?;
    assert_eq!(none, None);
    assert_eq!(
        b.fintech_num("100000000000000000000000", "app-a").await?,
        None
    );

    // Again on B an hour later, inquiry only: the same number, the first
    // registration time, a new inquiry consent, the transfer consent kept.
    let later = Ask {
        transfer: false,
        now: now + 3_600_000,
        ..both
    };
    assert_eq!(later.on(&b, &ids(&["097/1"])).await?, vec![nums[1].clone()]);
    let regs = a.registrations("1100000001", "app-a").await?;
    let again = regs
        .iter()
        .find(|r| r.account == "097/1")
        .context("097/1")?;
    assert_eq!(again.registered_dtime, reg.registered_dtime);
    assert_eq!(again.transfer, reg.transfer);
    assert_eq!(
        again.inquiry.as_ref().map(|c| c.expires_millis),
        Some(now + 3_600_000 + 365 * DAY)
    );
    // The same account with another client of the institution: its
    // number; with another institution: a new one.
    let other_client = Ask {
        client: "app-b",
        ..both
    };
    assert_eq!(
        other_client.on(&b, &ids(&["097/1"])).await?,
        vec![nums[1].clone()]
    );
    let other_institution = Ask {
        client: "app-c",
        code: "M202300777",
        ..both
    };
    let theirs = other_institution.on(&a, &ids(&["097/1"])).await?;
    assert_ne!(theirs[0], nums[1]);
    assert!(theirs[0].starts_with("1202300777"), "{theirs:?}");

    // Live numbers, unlink on A, seen on B; an unlink again touches none.
    assert_eq!(
        b.live_fintech_nums("1100000001", "app-a", now).await?,
        vec![nums[0].clone(), nums[1].clone()]
    );
    assert_eq!(
        b.live_fintech_nums("1100000001", "app-a", now + 366 * DAY)
            .await?,
        Vec::<String>::new(),
        "expired"
    );
    assert_eq!(a.unlink_consents("1100000001", "app-a").await?, 2);
    assert_eq!(a.unlink_consents("1100000001", "app-a").await?, 0);
    assert_eq!(
        b.live_fintech_nums("1100000001", "app-a", now).await?,
        Vec::<String>::new()
    );
    let (_, withdrawn) = b
        .fintech_num(&nums[1], "app-a")
        .await?
        .context("the number")?;
    let withdrawn = withdrawn.context("still registered")?;
    assert!(withdrawn.inquiry.is_some_and(|c| c.withdrawn));
    assert!(withdrawn.transfer.is_some_and(|c| c.withdrawn));
    // Other clients' consents stay.
    assert_eq!(
        a.live_fintech_nums("1100000001", "app-b", now).await?,
        vec![nums[1].clone()]
    );

    // Cancel one consent: once per bank_tran_id, on any node.
    let key = |id: &str| TranKey {
        institution: INSTITUTION.into(),
        bank_tran_id: format!("{INSTITUTION}U{id}"),
        business_date: "20270115".into(),
    };
    let cancel = |node: &Cluster, id: &str, account: &str, scope| {
        let (node, key, account) = (node.clone(), key(id), account.to_owned());
        async move {
            node.cancel_consent(&key, "1100000001", "app-b", &account, scope)
                .await
        }
    };
    assert_eq!(
        cancel(&a, "000000001", "097/1", Scope::Inquiry).await?,
        Cancelled::Done
    );
    assert_eq!(
        cancel(&b, "000000001", "097/1", Scope::Transfer).await?,
        Cancelled::Duplicate
    );
    assert_eq!(
        cancel(&b, "000000002", "097/1", Scope::Inquiry).await?,
        Cancelled::NoConsent
    );
    assert_eq!(
        cancel(&b, "000000002", "004/2", Scope::Inquiry).await?,
        Cancelled::NotRegistered
    );
    // Refused cancels used up nothing: the id still cancels once.
    assert_eq!(
        cancel(&b, "000000002", "097/1", Scope::Transfer).await?,
        Cancelled::Done
    );
    assert_eq!(
        a.live_fintech_nums("1100000001", "app-b", now).await?,
        Vec::<String>::new()
    );

    // The schema refuses what the bank never issues: an account not on
    // the ledger, a number that does not spell its institution.
    match both.on(&a, &ids(&["097/999"])).await {
        Err(Error::Constraint(_)) => {}
        other => bail!("an account not on the ledger: {other:?}"),
    }
    let forged = a
        .register_consents(
            &NewConsents {
                user_seq_no: "1100000002",
                client_id: "app-a",
                client_use_code: INSTITUTION,
                accounts: &ids(&["081/4"]),
                now_dtime: "20270115000000",
                inquiry: consent("20270115000000", now),
                transfer: None,
            },
            |seq| number("M999999999", seq),
        )
        .await;
    assert!(matches!(forged, Err(Error::Constraint(_))), "{forged:?}");
    Ok(())
}

/// Two nodes registering the same account at once get one number, and
/// exactly one row holds it; registrations of the same accounts in
/// opposite orders do not deadlock each other out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_registrations_of_one_account_get_one_number() -> Result<()> {
    let Some(url) = database("consents_race").await? else {
        return Ok(());
    };
    let nodes = [
        Cluster::connect(&url, 8).await?,
        Cluster::connect(&url, 8).await?,
    ];
    accounts(&nodes[0], &["097/1", "004/2", "088/3"]).await?;
    const RACERS: usize = 16;
    for round in 0..4 {
        let user = format!("11000000{round:02}");
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (node, user) = (nodes[i % 2].clone(), user.clone());
                // Half ask in one order, half in the other.
                let accounts = if i % 2 == 0 {
                    ids(&["097/1", "004/2", "088/3"])
                } else {
                    ids(&["088/3", "004/2", "097/1"])
                };
                tokio::spawn(async move {
                    let ask = Ask {
                        user: &user,
                        client: if i % 3 == 0 { "app-a" } else { "app-b" },
                        code: INSTITUTION,
                        inquiry: true,
                        transfer: i % 4 == 0,
                        now: 1_800_000_000_000,
                    };
                    let mut nums = ask.on(&node, &accounts).await?;
                    if i % 2 == 1 {
                        nums.reverse();
                    }
                    Ok::<_, sfop_store_pg::Error>(nums)
                })
            })
            .collect();
        let mut seen = Vec::new();
        for racer in racers {
            seen.push(racer.await??);
        }
        assert!(
            seen.iter().all(|n| n == &seen[0]),
            "round {round}: {seen:?}"
        );
        let client = raw(&url).await?;
        for account in ["097/1", "004/2", "088/3"] {
            let rows: i64 = client
                .query_one(
                    "SELECT count(*) FROM vbank_fintech_nums WHERE client_use_code = $1 \
                     AND user_seq_no = $2 AND account = $3",
                    &[&INSTITUTION, &user, &account],
                )
                .await?
                .get(0);
            assert_eq!(rows, 1, "round {round}: {account}");
            let registrations: i64 = client
                .query_one(
                    "SELECT count(*) FROM vbank_registrations WHERE user_seq_no = $1 \
                     AND account = $2",
                    &[&user, &account],
                )
                .await?
                .get(0);
            assert_eq!(registrations, 2, "round {round}: one per client");
        }
    }
    Ok(())
}

/// Nodes starting at once copy the seeded consents once; numbers issued
/// afterwards continue the sequence past the seeded ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_consents_are_copied_once() -> Result<()> {
    let Some(url) = database("consents_seed").await? else {
        return Ok(());
    };
    let nodes = [
        Cluster::connect(&url, 2).await?,
        Cluster::connect(&url, 2).await?,
        Cluster::connect(&url, 2).await?,
    ];
    accounts(&nodes[0], &["097/1", "004/2"]).await?;
    let num = |seq| number(INSTITUTION, seq).unwrap_or_default();
    let nums = [
        (
            5,
            FintechNum {
                fintech_use_num: num(5),
                client_use_code: INSTITUTION.into(),
                user_seq_no: "1100000001".into(),
                account: "097/1".into(),
            },
        ),
        (
            6,
            FintechNum {
                fintech_use_num: num(6),
                client_use_code: INSTITUTION.into(),
                user_seq_no: "1100000001".into(),
                account: "004/2".into(),
            },
        ),
    ];
    let registrations: Vec<_> = nums
        .iter()
        .map(|(_, n)| RegistrationRow {
            user_seq_no: n.user_seq_no.clone(),
            client_id: "sfop-demo-client".into(),
            account: n.account.clone(),
            fintech_use_num: n.fintech_use_num.clone(),
            registered_dtime: "20270101000000".into(),
            inquiry: consent("20270101000000", 1_900_000_000_000),
            transfer: None,
        })
        .collect();
    let (x, y, z) = tokio::join!(
        nodes[0].seed_consents(&nums, &registrations),
        nodes[1].seed_consents(&nums, &registrations),
        nodes[2].seed_consents(&nums, &registrations),
    );
    let mut copied = [x?, y?, z?];
    copied.sort_unstable();
    assert_eq!(copied, [0, 0, 2]);
    // By account.
    let mut by_account = registrations.clone();
    by_account.sort_by(|x, y| x.account.cmp(&y.account));
    assert_eq!(
        nodes[1]
            .registrations("1100000001", "sfop-demo-client")
            .await?,
        by_account
    );
    // A number issued now comes after the seeded ones.
    let ask = Ask {
        user: "1100000002",
        client: "sfop-demo-client",
        code: INSTITUTION,
        inquiry: true,
        transfer: false,
        now: 1_800_000_000_000,
    };
    assert_eq!(ask.on(&nodes[2], &ids(&["097/1"])).await?, vec![num(7)]);
    Ok(())
}
