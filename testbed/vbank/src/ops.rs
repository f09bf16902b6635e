//! The `ledger` operations: who may do what (from the caller the host
//! passed), and the double-entry bookings.

use sfop_core::ledger::{
    AccountRef, Balance, BankAnswer, BankCall, BankError, ConsentScope, DepositRequest, Direction,
    HistoryPage, HistoryQuery, InoutFilter, Party, Posting, RealName, RealNameQuery, ReceiveCheck,
    ReceiveQuery, Recipient, Refusal, RegisteredAccount, RemitQuery, ResultQuery, SortOrder,
    TransferKind, TransferReceipt, UserInfo, WithdrawRequest, codes,
};
use std::collections::BTreeMap;

use sfop_core::{Bank, BankBackend, Claims};
use sfop_store::{Abort, TxTree};

use crate::model::{
    Account, AccountState, AnswerRec, Dir, FintechLink, Institution, InstitutionState, PartyRec,
    Registration, StoredBank, StoredOutcome, StoredPosting, StoredTransfer, TranRecord, User,
    account_key, dtime, mask_account_num, posting_key,
};
use crate::{Error, VirtualBank, secret};

pub(crate) mod cluster;

type R<T> = Result<T, BankError>;

/// Bank result codes (`bank_rsp_code`) of the virtual bank.
pub mod bank_codes {
    pub const OK: (&str, &str) = ("000", "정상처리");
    pub const NO_ACCOUNT: (&str, &str) = ("412", "계좌 없음");
    pub const CLOSED: (&str, &str) = ("415", "해지 계좌");
    pub const SUSPENDED: (&str, &str) = ("420", "거래 정지 계좌");
    pub const INSUFFICIENT_FUNDS: (&str, &str) = ("422", "잔액 부족");
    pub const PASS_PHRASE: (&str, &str) = ("425", "출금이체 비밀번호 불일치");
    pub const NO_ORIGINAL: (&str, &str) = ("430", "원거래 없음");
    pub const AMOUNT_MISMATCH: (&str, &str) = ("431", "원거래 금액 불일치");
    pub const HOLDER_NAME: (&str, &str) = ("815", "예금주 성명 불일치");
    pub const HOLDER_INFO: (&str, &str) = ("816", "실명번호 불일치");
}

/// Largest page of history a caller may ask for.
const MAX_PAGE: u32 = 100;

trait OrBackend<T> {
    fn bank(self) -> R<T>;
}

impl<T> OrBackend<T> for Result<T, sfop_store::Error> {
    fn bank(self) -> R<T> {
        self.map_err(|e| backend_failure(&e))
    }
}

impl<T> OrBackend<T> for Result<T, Error> {
    fn bank(self) -> R<T> {
        self.map_err(|e| backend_failure(&e))
    }
}

fn backend_failure(e: &dyn std::fmt::Display) -> BankError {
    tracing::error!(error = %e, "virtual bank: store failed");
    BankError::Backend("virtual bank store failed".into())
}

fn refuse<T>(code: &str, message: impl Into<String>) -> R<T> {
    Err(Refusal::new(code, message).into())
}

/// Where the bank's rules read fintech numbers and registrations: the
/// bank's own trees (one node: [`VirtualBank`]), or what the cluster holds
/// for the call at hand (`cluster::Fetched`).
pub(crate) trait Consents {
    /// What `fintech_use_num` stands for, if the bank issued it.
    fn link(&self, fintech_use_num: &str) -> R<Option<FintechLink>>;
    /// The registration of `account` by `user` with `client_id`.
    fn registration(&self, user: &str, client_id: &str, account: &str) -> R<Option<Registration>>;
}

impl Consents for VirtualBank {
    fn link(&self, fintech_use_num: &str) -> R<Option<FintechLink>> {
        self.t.fintech.get_json(fintech_use_num).bank()
    }

    fn registration(&self, user: &str, client_id: &str, account: &str) -> R<Option<Registration>> {
        self.t
            .registrations
            .get_json(&format!("{user}/{client_id}/{account}"))
            .bank()
    }
}

/// What a call is about: its caller, its clock.
struct Ctx<'a> {
    caller: &'a Claims,
    now_millis: u64,
    /// 14 digits.
    now: String,
}

impl<'a> Ctx<'a> {
    fn new(call: &BankCall<'a>) -> R<Self> {
        let Some(caller) = call.caller else {
            return refuse(codes::NO_ACCESS, "the call carries no verified caller");
        };
        Ok(Self {
            caller,
            now_millis: call.now_millis,
            now: dtime(call.now_millis, call.utc_offset_minutes),
        })
    }

    fn date(&self) -> &str {
        &self.now[..8]
    }

    fn institution(&self) -> R<&'a str> {
        match self.caller.client_use_code.as_deref() {
            Some(code) if !code.is_empty() => Ok(code),
            _ => refuse(codes::NO_ACCESS, "the caller has no institution code"),
        }
    }

    fn user(&self) -> R<&'a str> {
        match self.caller.user_seq_no.as_deref() {
            Some(user) if !user.is_empty() => Ok(user),
            _ => refuse(codes::NO_ACCESS, "the token carries no user"),
        }
    }

    /// The bank part of the answer for `bank_tran_id` at bank `bank_code`.
    fn answer(
        &self,
        bank_tran_id: &str,
        bank_code: &str,
        (code, message): (&str, &str),
    ) -> BankAnswer {
        BankAnswer {
            bank_tran_id: bank_tran_id.to_owned(),
            bank_tran_date: self.date().to_owned(),
            bank_code_tran: bank_code.to_owned(),
            bank_rsp_code: code.to_owned(),
            bank_rsp_message: message.to_owned(),
        }
    }

    fn bank_refusal(&self, bank_tran_id: &str, bank_code: &str, why: (&str, &str)) -> Refusal {
        Refusal::by_bank(self.answer(bank_tran_id, bank_code, why))
    }
}

/// `bank_tran_id` is the caller institution's code, `U` and nine characters.
fn check_tran_id(bank_tran_id: &str, institution: &str) -> R<()> {
    let well_formed = bank_tran_id.len() == 20
        && bank_tran_id.as_bytes().get(10) == Some(&b'U')
        && bank_tran_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !well_formed {
        return refuse(
            codes::FORMAT,
            "bank_tran_id: must be the 10-character institution code, 'U' and 9 characters",
        );
    }
    if !bank_tran_id.starts_with(institution) {
        return refuse(
            codes::FORMAT,
            format!("bank_tran_id: must begin with the institution code {institution}"),
        );
    }
    Ok(())
}

fn check_amount(tran_amt: u64) -> R<()> {
    if tran_amt == 0 || tran_amt > 999_999_999_999 {
        return refuse(codes::FORMAT, "tran_amt: must be 1 to 999999999999 won");
    }
    Ok(())
}

fn ensure_dtime(field: &str, value: &str) -> R<()> {
    if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return refuse(
            codes::FORMAT,
            format!("{field}: must be 14 digits YYYYMMDDhhmmss"),
        );
    }
    Ok(())
}

/// Which page of a history an inquiry asks for: its period checked, the
/// cursor it continues after (the last sequence number of the previous
/// page) and the page's size.
struct Paging {
    reverse: bool,
    cursor: Option<u64>,
    size: usize,
}

/// One page of a history, and how many postings the period holds.
struct Page {
    postings: Vec<Posting>,
    total: u32,
    next_cursor: Option<String>,
}

impl Paging {
    fn new(
        (from, to): (&str, &str),
        order: SortOrder,
        cursor: Option<&str>,
        page_size: u32,
    ) -> R<Self> {
        ensure_dtime("from", from)?;
        ensure_dtime("to", to)?;
        let cursor = match cursor {
            None | Some("") => None,
            Some(c) if c.len() == 20 && c.bytes().all(|b| b.is_ascii_digit()) => {
                c.parse::<u64>().ok()
            }
            Some(_) => {
                return refuse(
                    codes::FORMAT,
                    "befor_inquiry_trace_info: not a cursor this bank issued",
                );
            }
        };
        Ok(Self {
            reverse: order == SortOrder::Descending,
            cursor,
            size: match page_size {
                0 => 25,
                n => n.min(MAX_PAGE),
            } as usize,
        })
    }

    /// The page of `rows` (the period's postings, in the order asked) after
    /// the cursor; `seq` numbers a row.
    fn page<P>(
        &self,
        rows: impl IntoIterator<Item = R<P>>,
        seq: impl Fn(&P) -> u64,
        posting: impl Fn(P) -> Posting,
    ) -> R<Page> {
        let mut total = 0u32;
        let mut page = Vec::new();
        let mut last = None;
        let mut more = false;
        for row in rows {
            let row = row?;
            total = total.saturating_add(1);
            let n = seq(&row);
            let after_cursor = self
                .cursor
                .is_none_or(|c| if self.reverse { n < c } else { n > c });
            if !after_cursor {
                continue;
            }
            if page.len() < self.size {
                last = Some(n);
                page.push(posting(row));
            } else {
                more = true;
            }
        }
        Ok(Page {
            postings: page,
            total,
            next_cursor: last.filter(|_| more).map(|n| format!("{n:020}")),
        })
    }
}

impl VirtualBank {
    fn bank_record(&self, code: &str, field: &str) -> R<StoredBank> {
        match self.t.banks.get_json::<StoredBank>(code).bank()? {
            Some(bank) => Ok(bank),
            None => refuse(
                codes::FORMAT,
                format!("{field}: no participant bank {code:?}"),
            ),
        }
    }

    /// An outage answers as the bank not answering.
    fn ensure_up(&self, code: &str) -> R<()> {
        match self.t.banks.get_json::<StoredBank>(code).bank()? {
            Some(bank) if bank.available => Ok(()),
            _ => Err(BankError::Timeout),
        }
    }

    fn account(&self, key: &str) -> R<Option<Account>> {
        self.t.accounts.get_json(key).bank()
    }

    /// The caller's user's account behind `fintech_use_num`.
    fn owned_link(
        c: &dyn Consents,
        fintech_use_num: &str,
        user: &str,
        institution: &str,
    ) -> R<FintechLink> {
        let mismatch = || {
            refuse(
                codes::FINTECH_NUM_MISMATCH,
                "fintech_use_num: not a number of the caller's user",
            )
        };
        if !secret::fintech_num_well_formed(fintech_use_num) {
            return mismatch();
        }
        match c.link(fintech_use_num)? {
            Some(link) if link.user_seq_no == user && link.client_use_code == institution => {
                Ok(link)
            }
            _ => mismatch(),
        }
    }

    /// The registration of the account with the caller's client, if consent
    /// of `scope` is live.
    fn consented(
        c: &dyn Consents,
        ctx: &Ctx<'_>,
        user: &str,
        account: &str,
        scope: ConsentScope,
    ) -> R<Registration> {
        let (missing, expired) = match scope {
            ConsentScope::Inquiry => (
                codes::INQUIRY_CONSENT_MISSING,
                codes::INQUIRY_CONSENT_EXPIRED,
            ),
            ConsentScope::Transfer => (
                codes::TRANSFER_CONSENT_MISSING,
                codes::TRANSFER_CONSENT_EXPIRED,
            ),
        };
        let Some(registration) = c.registration(user, &ctx.caller.client_id, account)? else {
            return refuse(
                missing,
                format!("no {} consent for this account", scope.as_str()),
            );
        };
        let consent = match scope {
            ConsentScope::Inquiry => &registration.inquiry,
            ConsentScope::Transfer => &registration.transfer,
        };
        match consent {
            Some(c) if c.withdrawn => refuse(
                missing,
                format!("the {} consent was withdrawn", scope.as_str()),
            ),
            Some(c) if !c.live(ctx.now_millis) => refuse(
                expired,
                format!("the {} consent has expired", scope.as_str()),
            ),
            Some(_) => Ok(registration),
            None => refuse(
                missing,
                format!("no {} consent for this account", scope.as_str()),
            ),
        }
    }

    /// Uses up `bank_tran_id` for an inquiry: a repeat today is `A0326`.
    fn consume_tran_id(&self, ctx: &Ctx<'_>, bank_tran_id: &str) -> R<()> {
        let key = format!("{}/{bank_tran_id}", ctx.date());
        let _w = self.lock();
        if self.t.tranids.get(key.as_bytes()).bank()?.is_some() {
            return refuse(
                codes::DUPLICATE_BANK_TRAN_ID,
                "bank_tran_id: already used today",
            );
        }
        self.t
            .tranids
            .insert_json(&key, &TranRecord::Inquiry)
            .bank()
    }

    /// The caller's user's account behind `fintech_use_num`, checked for an
    /// inquiry (the id's form, the owner, a live consent, the bank up)
    /// before its id is consumed: the account's key and its bank's code.
    fn inquiry_link(
        &self,
        c: &dyn Consents,
        ctx: &Ctx<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> R<(String, String)> {
        let (institution, user) = (ctx.institution()?, ctx.user()?);
        check_tran_id(bank_tran_id, institution)?;
        let link = Self::owned_link(c, fintech_use_num, user, institution)?;
        Self::consented(c, ctx, user, &link.account, ConsentScope::Inquiry)?;
        let bank_code = Self::bank_code_of(&link.account).to_owned();
        self.ensure_up(&bank_code)?;
        Ok((link.account, bank_code))
    }

    /// The account `key` an inquiry reads once its id is consumed: closed
    /// or missing is the bank's refusal.
    fn inquired_account(
        &self,
        ctx: &Ctx<'_>,
        bank_tran_id: &str,
        bank_code: &str,
        key: &str,
    ) -> R<Account> {
        match self.account(key)? {
            Some(a) if a.state != AccountState::Closed => Ok(a),
            Some(_) => Err(ctx
                .bank_refusal(bank_tran_id, bank_code, bank_codes::CLOSED)
                .into()),
            None => Err(ctx
                .bank_refusal(bank_tran_id, bank_code, bank_codes::NO_ACCOUNT)
                .into()),
        }
    }

    /// The caller institution's contract account a remit list reads,
    /// checked (the id's form, the bank, the contract, the bank up) before
    /// its id is consumed: the account's key.
    fn remit_account(&self, ctx: &Ctx<'_>, q: &RemitQuery) -> R<String> {
        let institution = ctx.institution()?;
        check_tran_id(&q.bank_tran_id, institution)?;
        self.bank_record(&q.account.bank_code_std, "bank_code_std")?;
        let key = account_key(&q.account.bank_code_std, &q.account.account_num);
        let (_, contract) = self.contract(institution, &q.account.account_num)?;
        if contract != key {
            return refuse(
                codes::UNREGISTERED_CONTRACT,
                "account_num: not an account registered to the institution",
            );
        }
        self.ensure_up(&q.account.bank_code_std)?;
        Ok(key)
    }

    /// The institution and its contract account numbered `cntr_account_num`.
    fn contract(&self, institution: &str, cntr_account_num: &str) -> R<(Institution, String)> {
        let inst: Option<Institution> = self.t.institutions.get_json(institution).bank()?;
        // Only an approved institution moves money or reads its contract
        // accounts (docs/adr/0017-institutions.md).
        match inst.as_ref().map(|i| i.state) {
            Some(InstitutionState::Suspended) => {
                return refuse(
                    codes::NO_ACCESS,
                    "the institution is suspended by the platform operator",
                );
            }
            Some(InstitutionState::Requested) => {
                return refuse(
                    codes::NO_ACCESS,
                    "the institution is not yet approved by the platform operator",
                );
            }
            Some(InstitutionState::Active) | None => {}
        }
        let found = inst.and_then(|inst| {
            let key = inst
                .contract_accounts
                .iter()
                .find(|k| k.rsplit('/').next() == Some(cntr_account_num))?
                .clone();
            Some((inst, key))
        });
        match found {
            Some(found) => Ok(found),
            None => refuse(
                codes::UNREGISTERED_CONTRACT,
                "cntr_account_num: not a contract account registered to the institution",
            ),
        }
    }

    fn party(
        &self,
        account: &Account,
        print_content: &str,
        fintech: Option<(&str, &str)>,
    ) -> R<Party> {
        let name = self.bank_name(&account.bank_code).bank()?;
        Ok(party(name, account, print_content, fintech))
    }

    /// Every bank's name by code, read before a transaction: a transaction
    /// holds the journal's lock, and a plain read inside one would wait on
    /// it forever.
    fn bank_names(&self) -> R<BTreeMap<String, String>> {
        Ok(self
            .banks()
            .bank()?
            .into_iter()
            .map(|b| (b.code, b.name))
            .collect())
    }

    fn registered_account(
        &self,
        ctx: &Ctx<'_>,
        account_id: &str,
        reg: Registration,
    ) -> R<Option<RegisteredAccount>> {
        let Some(account) = self.account(account_id)? else {
            return Ok(None);
        };
        let live = |c: &Option<crate::model::Consent>| {
            c.as_ref()
                .filter(|c| c.live(ctx.now_millis))
                .map(|c| c.agreed_dtime.clone())
        };
        Ok(Some(RegisteredAccount {
            cancelled: reg.cancelled(),
            inquiry_agree_dtime: live(&reg.inquiry),
            transfer_agree_dtime: live(&reg.transfer),
            fintech_use_num: reg.fintech_use_num,
            registered_dtime: reg.registered_dtime,
            account_alias: account.alias.clone(),
            bank_name: self.bank_name(&account.bank_code).bank()?,
            bank_code_std: account.bank_code,
            account_num_masked: mask_account_num(&account.account_num),
            account_holder_name: account.holder_name,
            account_type: account.account_type,
        }))
    }

    /// The caller's user, when it is `user_seq_no`: a user reads only their
    /// own registrations.
    fn own_user<'a>(ctx: &Ctx<'a>, user_seq_no: &str) -> R<&'a str> {
        let user = ctx.user()?;
        if user != user_seq_no {
            return refuse(codes::NO_ACCESS, "user_seq_no: not the caller's user");
        }
        Ok(user)
    }

    fn registrations(
        &self,
        ctx: &Ctx<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> R<Vec<RegisteredAccount>> {
        let user = Self::own_user(ctx, user_seq_no)?;
        let prefix = format!("{user}/{}/", ctx.caller.client_id);
        let mut registered = Vec::new();
        for entry in self.t.registrations.prefix_json::<Registration>(&prefix) {
            let (key, reg) = entry.bank()?;
            let account = key.get(prefix.len()..).unwrap_or_default().to_owned();
            registered.push((account, reg));
        }
        self.registered_list(ctx, registered, include_cancelled)
    }

    /// The answer listing `registered` (account key, registration), by
    /// registration time.
    fn registered_list(
        &self,
        ctx: &Ctx<'_>,
        registered: Vec<(String, Registration)>,
        include_cancelled: bool,
    ) -> R<Vec<RegisteredAccount>> {
        let mut out = Vec::new();
        for (account, reg) in registered {
            if !include_cancelled && reg.cancelled() {
                continue;
            }
            if let Some(account) = self.registered_account(ctx, &account, reg)? {
                out.push(account);
            }
        }
        out.sort_by(|a, b| a.registered_dtime.cmp(&b.registered_dtime));
        Ok(out)
    }

    /// One page of `account`'s postings in `[from, to]` matching `filter`.
    #[allow(clippy::too_many_arguments)]
    fn history(
        &self,
        ctx: &Ctx<'_>,
        bank_tran_id: &str,
        account_id: &str,
        account: &Account,
        filter: InoutFilter,
        period: (&str, &str),
        order: SortOrder,
        cursor: Option<&str>,
        page_size: u32,
    ) -> R<HistoryPage> {
        let paging = Paging::new(period, order, cursor, page_size)?;
        let (from, to) = period;
        let prefix = format!("{account_id}/");
        let end = format!("{account_id}0"); // '0' sorts right after '/'
        let rows = self
            .t
            .postings
            .range_json::<StoredPosting>(prefix.as_bytes(), Some(end.as_bytes()), paging.reverse)
            .map(|entry| entry.map(|(_, p)| p).bank())
            .filter(|p| {
                p.as_ref().map_or(true, |p| {
                    let wanted = match filter {
                        InoutFilter::All => true,
                        InoutFilter::Deposits => p.dir == Dir::In,
                        InoutFilter::Withdrawals => p.dir == Dir::Out,
                    };
                    wanted && p.dtime.as_str() >= from && p.dtime.as_str() <= to
                })
            });
        let page = paging.page(rows, |p| p.seq, to_posting)?;
        self.history_page(ctx, bank_tran_id, account, account.balance, page)
    }

    /// The answer for one page of `account`'s history, whose balance is
    /// `balance`.
    fn history_page(
        &self,
        ctx: &Ctx<'_>,
        bank_tran_id: &str,
        account: &Account,
        balance: i64,
        page: Page,
    ) -> R<HistoryPage> {
        Ok(HistoryPage {
            answer: ctx.answer(bank_tran_id, &account.bank_code, bank_codes::OK),
            bank_name: self.bank_name(&account.bank_code).bank()?,
            account_num_masked: mask_account_num(&account.account_num),
            balance_amt: balance,
            total_record_cnt: page.total,
            postings: page.postings,
            next_cursor: page.next_cursor,
        })
    }

    /// The account a deposit or recipient check goes to, and the fintech
    /// number to show, if any.
    fn recipient(&self, c: &dyn Consents, institution: &str, recipient: &Recipient) -> R<Resolved> {
        match recipient {
            Recipient::FintechUseNum(num) => {
                let link = if secret::fintech_num_well_formed(num) {
                    c.link(num)?
                } else {
                    None
                };
                match link {
                    Some(link) if link.client_use_code == institution => {
                        let alias = self
                            .account(&link.account)?
                            .map(|a| a.alias)
                            .unwrap_or_default();
                        Ok((link.account, Some((num.clone(), alias)), None))
                    }
                    _ => refuse(
                        codes::FINTECH_NUM_MISMATCH,
                        "fintech_use_num: not issued to the caller's institution",
                    ),
                }
            }
            Recipient::Account(
                AccountRef {
                    bank_code_std,
                    account_num,
                },
                holder,
            ) => {
                self.bank_record(bank_code_std, "bank_code_std")?;
                Ok((
                    account_key(bank_code_std, account_num),
                    None,
                    holder.clone(),
                ))
            }
        }
    }

    fn bank_code_of(key: &str) -> &str {
        key.split('/').next().unwrap_or_default()
    }

    /// Decides and books one transfer under the writer lock, records its
    /// outcome under `bank_tran_id`, and makes it durable before answering.
    fn transfer(&self, ctx: &Ctx<'_>, t: Transfer<'_>) -> R<TransferReceipt> {
        let key = format!("{}/{}", ctx.date(), t.bank_tran_id);
        let names = self.bank_names()?;
        let trees = &self.t;
        let outcome = {
            let _w = self.lock();
            self.store.transaction(
                &[
                    &trees.accounts,
                    &trees.postings,
                    &trees.tranids,
                    &trees.usage,
                    &trees.meta,
                ],
                |tx| {
                    let [accounts, postings, tranids, usage, meta] = tx else {
                        return Err(Abort::with(Box::new(Refusal::new(
                            codes::BANK_ERROR,
                            "transaction trees",
                        ))));
                    };
                    if tranids.get(key.as_bytes())?.is_some() {
                        return Err(Abort::with(Box::new(Refusal::new(
                            codes::DUPLICATE_BANK_TRAN_ID,
                            "bank_tran_id: already used today",
                        ))));
                    }
                    let decided = decide(ctx, &t, &names, accounts, usage)?;
                    let stored = match decided {
                        Err(refusal) => StoredOutcome::Refused {
                            rsp_code: refusal.rsp_code.clone(),
                            rsp_message: refusal.rsp_message.clone(),
                            answer: refusal.bank.as_ref().map(AnswerRec::from),
                        },
                        Ok(decision) => {
                            book(
                                accounts,
                                postings,
                                meta,
                                &Booking {
                                    from: t.wd_key,
                                    to: t.dps_key,
                                    amount: t.tran_amt,
                                    dtime: &ctx.now,
                                    tran_type: "이체",
                                    wd_print: t.wd_print,
                                    dps_print: t.dps_print,
                                    branch: "오픈뱅킹",
                                    bank_tran_id: Some(t.bank_tran_id),
                                },
                            )?;
                            for (k, v) in &decision.usage {
                                usage.insert_json(k, v)?;
                            }
                            StoredOutcome::Done {
                                answer: AnswerRec::from(&decision.answer),
                                wd: PartyRec::from(&decision.wd),
                                dps: PartyRec::from(&decision.dps),
                                wd_limit_remain_amt: decision.wd_limit_remain_amt,
                            }
                        }
                    };
                    tranids.insert_json(
                        &key,
                        &TranRecord::Transfer(StoredTransfer {
                            kind: t.kind.into(),
                            tran_amt: t.tran_amt,
                            outcome: stored.clone(),
                        }),
                    )?;
                    Ok(stored)
                },
            )
        };
        // Whatever the answer, it is given only once the state it reports
        // is on disk (a duplicate's original may still be in flight): the
        // public operations flush (or join a group commit) before answering.
        match outcome {
            Ok(stored) => receipt_of(t.kind, t.tran_amt, stored),
            Err(sfop_store::TxError::Abort(refusal)) => Err(BankError::Refused(refusal)),
            Err(sfop_store::TxError::Store(e)) => Err(backend_failure(&e)),
        }
    }
}

/// The bank's decision on a transfer, inside its transaction (so it reads
/// only through `accounts` and `usage`): a refusal to record, or what to book.
fn decide(
    ctx: &Ctx<'_>,
    t: &Transfer<'_>,
    names: &BTreeMap<String, String>,
    accounts: &TxTree<'_>,
    usage: &TxTree<'_>,
) -> Result<Result<Decision, Refusal>, Abort<Box<Refusal>>> {
    let answer_bank = t.answer_bank();
    let no = |why| Ok(Err(ctx.bank_refusal(t.bank_tran_id, answer_bank, why)));
    let limit = |code: &str, what: &str| Ok(Err(Refusal::new(code, format!("{what} exceeded"))));
    let Some(wd) = accounts.get_json::<Account, _>(t.wd_key)? else {
        return no(bank_codes::NO_ACCOUNT);
    };
    let Some(dps) = accounts.get_json::<Account, _>(t.dps_key)? else {
        return no(bank_codes::NO_ACCOUNT);
    };
    if let Some(why) = t.refused_between(&wd, &dps) {
        return no(why);
    }
    let amt = t.tran_amt;
    let month = &ctx.now[..6];
    let used = |k: &str| -> Result<u64, Abort<Box<Refusal>>> {
        Ok(usage.get_json::<u64, _>(k)?.unwrap_or(0))
    };
    let mut new_usage = Vec::new();
    let mut wd_limit_remain_amt = None;
    if let Some(user) = t.user {
        let k = format!("uwd/{}/{}/{}", t.institution, user.user_seq_no, ctx.date());
        let today = used(&k)?;
        if amt > user.wd_per_tran {
            return limit(
                codes::USER_WD_PER_TRAN,
                "the user's per-transaction withdrawal limit",
            );
        }
        if today.saturating_add(amt) > user.wd_daily {
            return limit(codes::USER_WD_DAILY, "the user's daily withdrawal limit");
        }
        wd_limit_remain_amt = Some(user.wd_daily - today - amt);
        new_usage.push((k, today + amt));
    }
    let (limits, tag, codes3) = t.inst_limits();
    let (kd, km) = (
        format!("{tag}/{}/{}", t.institution, ctx.date()),
        format!("{tag}m/{}/{month}", t.institution),
    );
    let (day, mon) = (used(&kd)?, used(&km)?);
    if amt > limits.per_tran {
        return limit(codes3[0], "the institution's per-transaction limit");
    }
    if day.saturating_add(amt) > limits.daily {
        return limit(codes3[1], "the institution's daily limit");
    }
    if mon.saturating_add(amt) > limits.monthly {
        return limit(codes3[2], "the institution's monthly limit");
    }
    new_usage.push((kd, day + amt));
    new_usage.push((km, mon + amt));
    if wd.available() < amt {
        return no(bank_codes::INSUFFICIENT_FUNDS);
    }
    fn fintech(f: &Option<(String, String)>) -> Option<(&str, &str)> {
        f.as_ref().map(|(n, a)| (n.as_str(), a.as_str()))
    }
    let name = |a: &Account| names.get(&a.bank_code).cloned().unwrap_or_default();
    Ok(Ok(Decision {
        answer: ctx.answer(t.bank_tran_id, answer_bank, bank_codes::OK),
        wd: party(name(&wd), &wd, t.wd_print, fintech(&t.wd_fintech)),
        dps: party(name(&dps), &dps, t.dps_print, fintech(&t.dps_fintech)),
        wd_limit_remain_amt,
        usage: new_usage,
    }))
}

fn party(
    bank_name: String,
    account: &Account,
    print_content: &str,
    fintech: Option<(&str, &str)>,
) -> Party {
    Party {
        bank_code_std: account.bank_code.clone(),
        bank_name,
        account_num_masked: mask_account_num(&account.account_num),
        account_holder_name: account.holder_name.clone(),
        print_content: print_content.to_owned(),
        fintech_use_num: fintech.map(|(n, _)| n.to_owned()),
        account_alias: fintech.map(|(_, a)| a.to_owned()),
    }
}

/// The bank's answer to a transfer-result query it has no original for
/// (or one that does not match).
fn not_found(q: &ResultQuery, (code, message): (&str, &str)) -> Refusal {
    Refusal::by_bank(BankAnswer {
        bank_tran_id: q.org_bank_tran_id.clone(),
        bank_tran_date: q.org_bank_tran_date.clone(),
        bank_code_tran: String::new(),
        bank_rsp_code: code.to_owned(),
        bank_rsp_message: message.to_owned(),
    })
}

/// A recipient resolved: its account key, the fintech number and alias to
/// show, and the holder name to check.
type Resolved = (String, Option<(String, String)>, Option<String>);

/// What a receive check found before its `bank_tran_id` is used up.
struct ReceiveChecked {
    /// The caller's contract account (`bank/num`).
    contract: String,
    /// The recipient's account, its fintech number and account (when named
    /// by one), and the holder name the caller gave.
    dps_key: String,
    dps_fintech: Option<(String, String)>,
    holder: Option<String>,
    bank_code: String,
}

/// A transfer to decide.
struct Transfer<'a> {
    kind: TransferKind,
    bank_tran_id: &'a str,
    institution: &'a str,
    inst: &'a Institution,
    /// The user whose withdrawal limits apply.
    user: Option<&'a User>,
    wd_key: &'a str,
    dps_key: &'a str,
    wd_fintech: Option<(String, String)>,
    dps_fintech: Option<(String, String)>,
    tran_amt: u64,
    wd_print: &'a str,
    dps_print: &'a str,
    holder_check: Option<&'a str>,
    pass_phrase_ok: bool,
}

impl Transfer<'_> {
    /// The bank whose answer this is: the paying one for a withdrawal, the
    /// receiving one for a deposit.
    fn answer_bank(&self) -> &str {
        match self.kind {
            TransferKind::Withdraw => VirtualBank::bank_code_of(self.wd_key),
            TransferKind::Deposit => VirtualBank::bank_code_of(self.dps_key),
        }
    }

    /// The bank's refusal of this transfer between `wd` and `dps` on what
    /// needs no shared state: an account closed or suspended, the holder's
    /// name, the pass phrase.
    fn refused_between(&self, wd: &Account, dps: &Account) -> Option<(&'static str, &'static str)> {
        for account in [wd, dps] {
            match account.state {
                AccountState::Closed => return Some(bank_codes::CLOSED),
                AccountState::Suspended => return Some(bank_codes::SUSPENDED),
                AccountState::Active => {}
            }
        }
        if let Some(name) = self.holder_check
            && name.trim() != dps.holder_name
        {
            return Some(bank_codes::HOLDER_NAME);
        }
        if !self.pass_phrase_ok {
            return Some(bank_codes::PASS_PHRASE);
        }
        None
    }

    /// The institution's limits on this kind of transfer, the tag of their
    /// usage counters and the codes of their refusals (per transfer, day,
    /// month).
    fn inst_limits(&self) -> (crate::Limits, &'static str, [&'static str; 3]) {
        match self.kind {
            TransferKind::Withdraw => (
                self.inst.withdraw_limits,
                "iwd",
                [
                    codes::INST_WD_PER_TRAN,
                    codes::INST_WD_DAILY,
                    codes::INST_WD_MONTHLY,
                ],
            ),
            TransferKind::Deposit => (
                self.inst.deposit_limits,
                "idp",
                [
                    codes::INST_DP_PER_TRAN,
                    codes::INST_DP_DAILY,
                    codes::INST_DP_MONTHLY,
                ],
            ),
        }
    }
}

struct Decision {
    answer: BankAnswer,
    wd: Party,
    dps: Party,
    wd_limit_remain_amt: Option<u64>,
    usage: Vec<(String, u64)>,
}

fn receipt_of(kind: TransferKind, tran_amt: u64, stored: StoredOutcome) -> R<TransferReceipt> {
    match stored {
        StoredOutcome::Done {
            answer,
            wd,
            dps,
            wd_limit_remain_amt,
        } => Ok(TransferReceipt {
            answer: answer.into(),
            kind,
            tran_amt,
            wd: wd.into(),
            dps: dps.into(),
            wd_limit_remain_amt,
        }),
        StoredOutcome::Refused {
            rsp_code,
            rsp_message,
            answer,
        } => Err(Refusal {
            rsp_code,
            rsp_message,
            bank: answer.map(Into::into),
        }
        .into()),
    }
}

fn to_posting(p: StoredPosting) -> Posting {
    Posting {
        tran_date: p.dtime.get(..8).unwrap_or_default().to_owned(),
        tran_time: p.dtime.get(8..14).unwrap_or_default().to_owned(),
        direction: match p.dir {
            Dir::In => Direction::Deposit,
            Dir::Out => Direction::Withdrawal,
        },
        tran_type: p.tran_type,
        print_content: p.print_content,
        tran_amt: p.amount,
        after_balance_amt: p.after_balance,
        branch_name: p.branch_name,
        counterparty_name: p.counterparty_name,
        counterparty_bank_code: p.counterparty_bank_code,
        counterparty_account_num_masked: mask_account_num(&p.counterparty_account_num),
    }
}

/// One double-entry booking.
pub(crate) struct Booking<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub amount: u64,
    pub dtime: &'a str,
    pub tran_type: &'a str,
    pub wd_print: &'a str,
    pub dps_print: &'a str,
    pub branch: &'a str,
    pub bank_tran_id: Option<&'a str>,
}

/// Books `b` inside a transaction: a withdrawal posting on `from` and a
/// deposit posting on `to` under one sequence number, both balances moved.
pub(crate) fn book<E>(
    accounts: &TxTree<'_>,
    postings: &TxTree<'_>,
    meta: &TxTree<'_>,
    b: &Booking<'_>,
) -> Result<(), Abort<E>>
where
    E: From<Error>,
{
    let missing = |key: &str| Abort::with(E::from(Error::UnknownAccount(key.to_owned())));
    let amount = i64::try_from(b.amount)
        .map_err(|_| Abort::with(E::from(Error::Invalid("amount too large".into()))))?;
    let seq = meta.get_json::<u64, E>("posting_seq")?.unwrap_or(0) + 1;
    meta.insert_json("posting_seq", &seq)?;
    // Read-modify-write one account at a time, so a transfer to the same
    // account still replays correctly.
    let mut wd: Account = accounts.get_json(b.from)?.ok_or_else(|| missing(b.from))?;
    let dps_view: Account = accounts.get_json(b.to)?.ok_or_else(|| missing(b.to))?;
    wd.balance = wd
        .balance
        .checked_sub(amount)
        .ok_or_else(|| Abort::with(E::from(Error::Invalid("balance overflow".into()))))?;
    wd.last_tran_date = Some(b.dtime[..8].to_owned());
    postings.insert_json(
        &posting_key(b.from, seq),
        &StoredPosting {
            seq,
            dtime: b.dtime.to_owned(),
            dir: Dir::Out,
            tran_type: b.tran_type.to_owned(),
            print_content: b.wd_print.to_owned(),
            amount: b.amount,
            after_balance: wd.balance,
            branch_name: b.branch.to_owned(),
            counterparty_name: dps_view.holder_name.clone(),
            counterparty_bank_code: dps_view.bank_code.clone(),
            counterparty_account_num: dps_view.account_num.clone(),
            bank_tran_id: b.bank_tran_id.map(str::to_owned),
        },
    )?;
    accounts.insert_json(b.from, &wd)?;
    let mut dps: Account = accounts.get_json(b.to)?.ok_or_else(|| missing(b.to))?;
    dps.balance = dps
        .balance
        .checked_add(amount)
        .ok_or_else(|| Abort::with(E::from(Error::Invalid("balance overflow".into()))))?;
    dps.last_tran_date = Some(b.dtime[..8].to_owned());
    postings.insert_json(
        &posting_key(b.to, seq),
        &StoredPosting {
            seq,
            dtime: b.dtime.to_owned(),
            dir: Dir::In,
            tran_type: b.tran_type.to_owned(),
            print_content: b.dps_print.to_owned(),
            amount: b.amount,
            after_balance: dps.balance,
            branch_name: b.branch.to_owned(),
            counterparty_name: wd.holder_name.clone(),
            counterparty_bank_code: wd.bank_code.clone(),
            counterparty_account_num: wd.account_num.clone(),
            bank_tran_id: b.bank_tran_id.map(str::to_owned),
        },
    )?;
    accounts.insert_json(b.to, &dps)?;
    Ok(())
}

/// A branch transfer outside the platform (opening balances, seeded history).
/// The caller holds the writer lock.
pub(crate) fn book_internal(
    bank: &VirtualBank,
    from: &str,
    to: &str,
    amount: u64,
    dtime: &str,
    tran_type: &str,
    print_content: &str,
) -> crate::Result<()> {
    let t = &bank.t;
    bank.store
        .transaction(&[&t.accounts, &t.postings, &t.meta], |tx| {
            let [accounts, postings, meta] = tx else {
                return Err(Abort::with(Error::Invalid("transaction trees".into())));
            };
            book::<Error>(
                accounts,
                postings,
                meta,
                &Booking {
                    from,
                    to,
                    amount,
                    dtime,
                    tran_type,
                    wd_print: print_content,
                    dps_print: print_content,
                    branch: "본점",
                    bank_tran_id: None,
                },
            )
        })?;
    Ok(())
}

/// The ledger operations, synchronous: the decision and the booking run on
/// the calling thread. The three that write durably come in two halves:
/// `*_undurable` books and [`VirtualBank::withdraw`] (and the others) then
/// flush on the calling thread; the async [`BankBackend`] joins a group
/// commit instead ([`crate::commit`]).
impl VirtualBank {
    pub fn bank_status(&self, _call: &BankCall<'_>) -> R<Vec<Bank>> {
        self.banks().bank()
    }

    pub fn user_info(&self, call: &BankCall<'_>, user_seq_no: &str) -> R<UserInfo> {
        let ctx = Ctx::new(call)?;
        let accounts = self.registrations(&ctx, user_seq_no, false)?;
        self.user_answer(user_seq_no, accounts)
    }

    /// The user's information with their registered `accounts`.
    fn user_answer(&self, user_seq_no: &str, accounts: Vec<RegisteredAccount>) -> R<UserInfo> {
        let Some(user) = self.t.users.get_json::<User>(user_seq_no).bank()? else {
            return refuse(codes::NO_ACCESS, "user_seq_no: no such user");
        };
        Ok(UserInfo {
            user_seq_no: user.user_seq_no,
            user_ci: user.user_ci,
            user_name: user.name,
            accounts,
        })
    }

    pub fn registered_accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> R<Vec<RegisteredAccount>> {
        let ctx = Ctx::new(call)?;
        self.registrations(&ctx, user_seq_no, include_cancelled)
    }

    pub fn balance(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> R<Balance> {
        let ctx = Ctx::new(call)?;
        let (key, bank_code) = self.inquiry_link(self, &ctx, bank_tran_id, fintech_use_num)?;
        self.consume_tran_id(&ctx, bank_tran_id)?;
        let account = self.inquired_account(&ctx, bank_tran_id, &bank_code, &key)?;
        Ok(Balance {
            answer: ctx.answer(bank_tran_id, &bank_code, bank_codes::OK),
            fintech_use_num: fintech_use_num.to_owned(),
            bank_name: self.bank_name(&bank_code).bank()?,
            balance_amt: account.balance,
            available_amt: account.available(),
            account_type: account.account_type,
            product_name: account.product_name,
            account_issue_date: account.issue_date,
            maturity_date: account.maturity_date,
            last_tran_date: account.last_tran_date,
        })
    }

    pub fn transactions(&self, call: &BankCall<'_>, q: &HistoryQuery) -> R<HistoryPage> {
        let ctx = Ctx::new(call)?;
        let (key, bank_code) =
            self.inquiry_link(self, &ctx, &q.bank_tran_id, &q.fintech_use_num)?;
        self.consume_tran_id(&ctx, &q.bank_tran_id)?;
        let account = self.inquired_account(&ctx, &q.bank_tran_id, &bank_code, &key)?;
        self.history(
            &ctx,
            &q.bank_tran_id,
            &key,
            &account,
            q.inquiry_type,
            (&q.from_dtime, &q.to_dtime),
            q.sort_order,
            q.cursor.as_deref(),
            q.page_size,
        )
    }

    pub fn remit_list(&self, call: &BankCall<'_>, q: &RemitQuery) -> R<HistoryPage> {
        let ctx = Ctx::new(call)?;
        let key = self.remit_account(&ctx, q)?;
        self.consume_tran_id(&ctx, &q.bank_tran_id)?;
        let Some(account) = self.account(&key)? else {
            return Err(ctx
                .bank_refusal(
                    &q.bank_tran_id,
                    &q.account.bank_code_std,
                    bank_codes::NO_ACCOUNT,
                )
                .into());
        };
        self.history(
            &ctx,
            &q.bank_tran_id,
            &key,
            &account,
            InoutFilter::Deposits,
            (&q.from_dtime, &q.to_dtime),
            q.sort_order,
            q.cursor.as_deref(),
            q.page_size,
        )
    }

    fn withdraw_undurable(&self, call: &BankCall<'_>, r: &WithdrawRequest) -> R<TransferReceipt> {
        self.with_withdraw(self, call, r, |bank, ctx, t| bank.transfer(ctx, t))
    }

    /// Checks a withdrawal and hands the transfer it asks for to `then`,
    /// which books it (here, or on the cluster: [`cluster`]).
    fn with_withdraw<T>(
        &self,
        c: &dyn Consents,
        call: &BankCall<'_>,
        r: &WithdrawRequest,
        then: impl FnOnce(&Self, &Ctx<'_>, Transfer<'_>) -> R<T>,
    ) -> R<T> {
        let ctx = Ctx::new(call)?;
        let (institution, user_seq_no) = (ctx.institution()?, ctx.user()?);
        check_tran_id(&r.bank_tran_id, institution)?;
        check_amount(r.tran_amt)?;
        let link = Self::owned_link(c, &r.fintech_use_num, user_seq_no, institution)?;
        Self::consented(c, &ctx, user_seq_no, &link.account, ConsentScope::Transfer)?;
        let (inst, contract) = self.contract(institution, &r.cntr_account_num)?;
        let Some(user) = self.t.users.get_json::<User>(user_seq_no).bank()? else {
            return refuse(codes::NO_ACCESS, "the caller's user is unknown to the bank");
        };
        self.ensure_up(Self::bank_code_of(&link.account))?;
        self.ensure_up(Self::bank_code_of(&contract))?;
        let alias = self
            .account(&link.account)?
            .map(|a| a.alias)
            .unwrap_or_default();
        then(
            self,
            &ctx,
            Transfer {
                kind: TransferKind::Withdraw,
                bank_tran_id: &r.bank_tran_id,
                institution,
                inst: &inst,
                user: Some(&user),
                wd_key: &link.account,
                dps_key: &contract,
                wd_fintech: Some((r.fintech_use_num.clone(), alias)),
                dps_fintech: None,
                tran_amt: r.tran_amt,
                wd_print: &r.wd_print_content,
                dps_print: &r.dps_print_content,
                holder_check: None,
                pass_phrase_ok: true,
            },
        )
    }

    fn deposit_undurable(&self, call: &BankCall<'_>, r: &DepositRequest) -> R<TransferReceipt> {
        self.with_deposit(self, call, r, |bank, ctx, t| bank.transfer(ctx, t))
    }

    /// Checks a deposit and hands the transfer it asks for to `then`.
    fn with_deposit<T>(
        &self,
        c: &dyn Consents,
        call: &BankCall<'_>,
        r: &DepositRequest,
        then: impl FnOnce(&Self, &Ctx<'_>, Transfer<'_>) -> R<T>,
    ) -> R<T> {
        let ctx = Ctx::new(call)?;
        let institution = ctx.institution()?;
        check_tran_id(&r.bank_tran_id, institution)?;
        check_amount(r.tran_amt)?;
        let (inst, contract) = self.contract(institution, &r.cntr_account_num)?;
        let (dps_key, dps_fintech, holder) = self.recipient(c, institution, &r.recipient)?;
        self.ensure_up(Self::bank_code_of(&contract))?;
        self.ensure_up(Self::bank_code_of(&dps_key))?;
        then(
            self,
            &ctx,
            Transfer {
                kind: TransferKind::Deposit,
                bank_tran_id: &r.bank_tran_id,
                institution,
                pass_phrase_ok: r.wd_pass_phrase == inst.wd_pass_phrase,
                inst: &inst,
                user: None,
                wd_key: &contract,
                dps_key: &dps_key,
                wd_fintech: None,
                dps_fintech,
                tran_amt: r.tran_amt,
                wd_print: &r.wd_print_content,
                dps_print: &r.print_content,
                holder_check: holder.as_deref(),
            },
        )
    }

    fn transfer_result_undurable(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> R<Vec<Result<TransferReceipt, Refusal>>> {
        let ctx = Ctx::new(call)?;
        let institution = ctx.institution()?;
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            let not_found = |why| not_found(q, why);
            let record = if q.org_bank_tran_id.starts_with(institution) {
                let key = format!("{}/{}", q.org_bank_tran_date, q.org_bank_tran_id);
                self.t.tranids.get_json::<TranRecord>(&key).bank()?
            } else {
                None
            };
            let item = match record {
                Some(TranRecord::Transfer(t)) if TransferKind::from(t.kind) == q.kind => {
                    if t.tran_amt != q.org_tran_amt {
                        Err(not_found(bank_codes::AMOUNT_MISMATCH))
                    } else {
                        match receipt_of(q.kind, t.tran_amt, t.outcome) {
                            Ok(receipt) => Ok(receipt),
                            Err(BankError::Refused(refusal)) => Err(*refusal),
                            Err(e) => return Err(e),
                        }
                    }
                }
                _ => Err(not_found(bank_codes::NO_ORIGINAL)),
            };
            out.push(item);
        }
        // Report only what is on disk: the public operation flushes first.
        Ok(out)
    }

    pub fn real_name(&self, call: &BankCall<'_>, q: &RealNameQuery) -> R<RealName> {
        let ctx = self.real_name_checked(call, q)?;
        self.consume_tran_id(&ctx, &q.bank_tran_id)?;
        self.real_name_answer(&ctx, q)
    }

    /// What a real-name inquiry checks before its `bank_tran_id` is used
    /// up (a refusal here leaves the id unused).
    fn real_name_checked<'a>(&self, call: &BankCall<'a>, q: &RealNameQuery) -> R<Ctx<'a>> {
        let ctx = Ctx::new(call)?;
        let institution = ctx.institution()?;
        check_tran_id(&q.bank_tran_id, institution)?;
        let bank_code = &q.account.bank_code_std;
        self.bank_record(bank_code, "bank_code_std")?;
        if q.account_holder_info_type != " " && q.account_holder_info_type != "6" {
            return refuse(
                codes::FORMAT,
                "account_holder_info_type: must be ' ' (birth date) or '6' (business number)",
            );
        }
        self.ensure_up(bank_code)?;
        Ok(ctx)
    }

    /// The answer of a real-name inquiry whose id is used up.
    fn real_name_answer(&self, ctx: &Ctx<'_>, q: &RealNameQuery) -> R<RealName> {
        let bank_code = &q.account.bank_code_std;
        let account = match self.account(&account_key(bank_code, &q.account.account_num))? {
            Some(a) if a.state == AccountState::Closed => {
                return Err(ctx
                    .bank_refusal(&q.bank_tran_id, bank_code, bank_codes::CLOSED)
                    .into());
            }
            Some(a) => a,
            None => {
                return Err(ctx
                    .bank_refusal(&q.bank_tran_id, bank_code, bank_codes::NO_ACCOUNT)
                    .into());
            }
        };
        if account.holder_info != q.account_holder_info {
            return Err(ctx
                .bank_refusal(&q.bank_tran_id, bank_code, bank_codes::HOLDER_INFO)
                .into());
        }
        Ok(RealName {
            answer: ctx.answer(&q.bank_tran_id, bank_code, bank_codes::OK),
            bank_code_std: bank_code.clone(),
            bank_name: self.bank_name(bank_code).bank()?,
            account_num: q.account.account_num.clone(),
            account_holder_info_type: q.account_holder_info_type.clone(),
            account_holder_info: q.account_holder_info.clone(),
            account_holder_name: account.holder_name,
            account_type: account.account_type,
        })
    }

    pub fn receive(&self, call: &BankCall<'_>, q: &ReceiveQuery) -> R<ReceiveCheck> {
        let (ctx, checked) = self.receive_checked(self, call, q)?;
        self.consume_tran_id(&ctx, &q.bank_tran_id)?;
        self.receive_answer(&ctx, q, checked)
    }

    /// What a receive check checks before its `bank_tran_id` is used up,
    /// reading the recipient's fintech number from `c`.
    fn receive_checked<'a>(
        &self,
        c: &dyn Consents,
        call: &BankCall<'a>,
        q: &ReceiveQuery,
    ) -> R<(Ctx<'a>, ReceiveChecked)> {
        let ctx = Ctx::new(call)?;
        let institution = ctx.institution()?;
        check_tran_id(&q.bank_tran_id, institution)?;
        check_amount(q.tran_amt)?;
        let (_, contract) = self.contract(institution, &q.cntr_account_num)?;
        let (dps_key, dps_fintech, holder) = self.recipient(c, institution, &q.recipient)?;
        let bank_code = Self::bank_code_of(&dps_key).to_owned();
        self.ensure_up(&bank_code)?;
        self.ensure_up(Self::bank_code_of(&contract))?;
        Ok((
            ctx,
            ReceiveChecked {
                contract,
                dps_key,
                dps_fintech,
                holder,
                bank_code,
            },
        ))
    }

    /// The answer of a receive check whose id is used up.
    fn receive_answer(
        &self,
        ctx: &Ctx<'_>,
        q: &ReceiveQuery,
        checked: ReceiveChecked,
    ) -> R<ReceiveCheck> {
        let ReceiveChecked {
            contract,
            dps_key,
            dps_fintech,
            holder,
            bank_code,
        } = checked;
        let no = |why| -> R<ReceiveCheck> {
            Err(ctx.bank_refusal(&q.bank_tran_id, &bank_code, why).into())
        };
        let Some(dps) = self.account(&dps_key)? else {
            return no(bank_codes::NO_ACCOUNT);
        };
        match dps.state {
            AccountState::Closed => return no(bank_codes::CLOSED),
            AccountState::Suspended => return no(bank_codes::SUSPENDED),
            AccountState::Active => {}
        }
        if holder
            .as_deref()
            .is_some_and(|h| h.trim() != dps.holder_name)
        {
            return no(bank_codes::HOLDER_NAME);
        }
        let Some(wd) = self.account(&contract)? else {
            return no(bank_codes::NO_ACCOUNT);
        };
        let fintech = dps_fintech.as_ref().map(|(n, a)| (n.as_str(), a.as_str()));
        Ok(ReceiveCheck {
            answer: ctx.answer(&q.bank_tran_id, &bank_code, bank_codes::OK),
            dps: self.party(&dps, &q.print_content, fintech)?,
            wd: self.party(&wd, "", None)?,
            tran_amt: q.tran_amt,
        })
    }

    fn cancel_account_undurable(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> R<BankAnswer> {
        let ctx = Ctx::new(call)?;
        let (institution, user) = (ctx.institution()?, ctx.user()?);
        check_tran_id(bank_tran_id, institution)?;
        let link = Self::owned_link(self, fintech_use_num, user, institution)?;
        let missing = match scope {
            ConsentScope::Inquiry => codes::INQUIRY_CONSENT_MISSING,
            ConsentScope::Transfer => codes::TRANSFER_CONSENT_MISSING,
        };
        let reg_key = format!("{user}/{}/{}", ctx.caller.client_id, link.account);
        let tran_key = format!("{}/{bank_tran_id}", ctx.date());
        let bank_code = Self::bank_code_of(&link.account).to_owned();
        let t = &self.t;
        let result = {
            let _w = self.lock();
            self.store
                .transaction(&[&t.registrations, &t.tranids], |tx| {
                    let [registrations, tranids] = tx else {
                        return Err(Abort::with(Box::new(Refusal::new(
                            codes::BANK_ERROR,
                            "transaction trees",
                        ))));
                    };
                    if tranids.get(tran_key.as_bytes())?.is_some() {
                        return Err(Abort::with(Box::new(Refusal::new(
                            codes::DUPLICATE_BANK_TRAN_ID,
                            "bank_tran_id: already used today",
                        ))));
                    }
                    let mut reg: Registration =
                        registrations.get_json(&reg_key)?.ok_or_else(|| {
                            Abort::with(Box::new(Refusal::new(
                                missing,
                                "the account is not registered with this client",
                            )))
                        })?;
                    let consent = match scope {
                        ConsentScope::Inquiry => &mut reg.inquiry,
                        ConsentScope::Transfer => &mut reg.transfer,
                    };
                    match consent {
                        Some(c) if !c.withdrawn => c.withdrawn = true,
                        _ => {
                            return Err(Abort::with(Box::new(Refusal::new(
                                missing,
                                format!("no {} consent to cancel", scope.as_str()),
                            ))));
                        }
                    }
                    registrations.insert_json(&reg_key, &reg)?;
                    tranids.insert_json(&tran_key, &TranRecord::Inquiry)?;
                    Ok(())
                })
        };
        // Answered only once durable: the public operation flushes first.
        match result {
            Ok(()) => Ok(ctx.answer(bank_tran_id, &bank_code, bank_codes::OK)),
            Err(sfop_store::TxError::Abort(refusal)) => Err(BankError::Refused(refusal)),
            Err(sfop_store::TxError::Store(e)) => Err(backend_failure(&e)),
        }
    }
}

/// The durable operations on the calling thread: booked, then flushed
/// before the answer. For tools and tests; the gateway uses the async
/// [`BankBackend`], which joins a group commit instead.
impl VirtualBank {
    /// Moves money exactly once per `bank_tran_id`; answers only when durable.
    pub fn withdraw(&self, call: &BankCall<'_>, r: &WithdrawRequest) -> R<TransferReceipt> {
        let outcome = self.withdraw_undurable(call, r);
        self.flush().bank()?;
        outcome
    }

    /// Moves money exactly once per `bank_tran_id`; answers only when durable.
    pub fn deposit(&self, call: &BankCall<'_>, r: &DepositRequest) -> R<TransferReceipt> {
        let outcome = self.deposit_undurable(call, r);
        self.flush().bank()?;
        outcome
    }

    /// The original outcome of each queried transfer, as it is on disk.
    pub fn transfer_result(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> R<Vec<Result<TransferReceipt, Refusal>>> {
        let outcome = self.transfer_result_undurable(call, queries);
        self.flush().bank()?;
        outcome
    }

    pub fn cancel_account(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> R<BankAnswer> {
        let outcome = self.cancel_account_undurable(call, bank_tran_id, fintech_use_num, scope);
        self.flush().bank()?;
        outcome
    }
}

/// The ledger as the runtime reaches it. Reads and decisions that book
/// nothing run on the caller's task. The four operations that answer only
/// once durable (withdraw, deposit, transfer-result, cancel-account) are
/// booked on the commit thread, which flushes once for every booking
/// waiting (group commit, [`crate::commit`]): no async worker waits for a
/// disk.
#[async_trait::async_trait]
impl BankBackend for VirtualBank {
    async fn bank_status(&self, call: &BankCall<'_>) -> R<Vec<Bank>> {
        VirtualBank::bank_status(self, call)
    }

    async fn user_info(&self, call: &BankCall<'_>, user_seq_no: &str) -> R<UserInfo> {
        VirtualBank::user_info(self, call, user_seq_no)
    }

    async fn registered_accounts(
        &self,
        call: &BankCall<'_>,
        user_seq_no: &str,
        include_cancelled: bool,
    ) -> R<Vec<RegisteredAccount>> {
        VirtualBank::registered_accounts(self, call, user_seq_no, include_cancelled)
    }

    async fn balance(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
    ) -> R<Balance> {
        VirtualBank::balance(self, call, bank_tran_id, fintech_use_num)
    }

    async fn transactions(&self, call: &BankCall<'_>, q: &HistoryQuery) -> R<HistoryPage> {
        VirtualBank::transactions(self, call, q)
    }

    async fn remit_list(&self, call: &BankCall<'_>, q: &RemitQuery) -> R<HistoryPage> {
        VirtualBank::remit_list(self, call, q)
    }

    async fn withdraw(&self, call: &BankCall<'_>, r: &WithdrawRequest) -> R<TransferReceipt> {
        let r = r.clone();
        self.booked(call, move |bank, call| bank.withdraw_undurable(call, &r))
            .await
    }

    async fn deposit(&self, call: &BankCall<'_>, r: &DepositRequest) -> R<TransferReceipt> {
        let r = r.clone();
        self.booked(call, move |bank, call| bank.deposit_undurable(call, &r))
            .await
    }

    async fn transfer_result(
        &self,
        call: &BankCall<'_>,
        queries: &[ResultQuery],
    ) -> R<Vec<Result<TransferReceipt, Refusal>>> {
        let queries = queries.to_vec();
        self.booked(call, move |bank, call| {
            bank.transfer_result_undurable(call, &queries)
        })
        .await
    }

    async fn real_name(&self, call: &BankCall<'_>, q: &RealNameQuery) -> R<RealName> {
        VirtualBank::real_name(self, call, q)
    }

    async fn receive(&self, call: &BankCall<'_>, q: &ReceiveQuery) -> R<ReceiveCheck> {
        VirtualBank::receive(self, call, q)
    }

    async fn cancel_account(
        &self,
        call: &BankCall<'_>,
        bank_tran_id: &str,
        fintech_use_num: &str,
        scope: ConsentScope,
    ) -> R<BankAnswer> {
        let (bank_tran_id, fintech_use_num) = (bank_tran_id.to_owned(), fintech_use_num.to_owned());
        self.booked(call, move |bank, call| {
            bank.cancel_account_undurable(call, &bank_tran_id, &fintech_use_num, scope)
        })
        .await
    }
}

impl From<Error> for Box<Refusal> {
    fn from(e: Error) -> Self {
        tracing::error!(error = %e, "virtual bank: booking failed");
        Box::new(Refusal::new(
            codes::BANK_ERROR,
            "virtual bank booking failed",
        ))
    }
}
