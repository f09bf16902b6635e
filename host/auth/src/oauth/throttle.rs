//! Guessing throttle for password sign-in (the authorize page's and the
//! portal's): failures are counted per key (an account, a client address),
//! and past a few free tries each further failure closes the key for twice
//! as long as the one before, up to a ceiling.
//!
//! A small keyed map rather than the `governor` crate: governor's GCRA
//! limits a *rate* (n per period) and never escalates, while guessing calls
//! for exponential backoff that only failures feed and that a success on the
//! account clears; and its keyed store grows with every key it sees unless
//! swept, where this map has a hard bound on its size (an attacker who
//! cycles through addresses evicts the stalest entries, never grows memory).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// How a throttle escalates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed before the key is closed at all.
    pub free_failures: u32,
    /// The first closure, seconds; each further failure doubles it.
    pub base_secs: u64,
    /// The longest closure, seconds.
    pub max_secs: u64,
    /// A key idle (no failure) this long starts afresh.
    pub forget_after_secs: u64,
    /// Keys kept at most; past it the stalest are evicted.
    pub capacity: usize,
}

impl ThrottlePolicy {
    /// Per account: a few tries, then 1 s, 2 s, 4 s ... up to 15 min.
    pub const PER_ACCOUNT: Self = Self {
        free_failures: 5,
        base_secs: 1,
        max_secs: 900,
        forget_after_secs: 3600,
        capacity: 100_000,
    };
    /// Per client address: more free tries (several people may share an
    /// address behind NAT), the same escalation.
    pub const PER_ADDRESS: Self = Self {
        free_failures: 20,
        base_secs: 1,
        max_secs: 900,
        forget_after_secs: 3600,
        capacity: 100_000,
    };
}

/// Times are milliseconds since the epoch: a closure of one second lasts a
/// second from the failure, not until the next turn of the clock's second.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Until when the key is closed.
    closed_until: u64,
    last_failure: u64,
}

/// Whole seconds to wait for `ms` milliseconds, rounded up.
fn secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// Failure counts per key, bounded in size.
#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(seconds to wait)` while `key` is closed at `now_ms`.
    pub fn check(&self, key: &str, now_ms: u64) -> Result<(), u64> {
        match self.entries().get(key) {
            Some(e) if e.closed_until > now_ms => Err(secs(e.closed_until - now_ms)),
            _ => Ok(()),
        }
    }

    /// Counts a failure for `key` at `now_ms`; returns how many seconds it
    /// is now closed for, if it is.
    pub fn failure(&self, key: &str, now_ms: u64) -> Option<u64> {
        let p = self.policy;
        let now = now_ms;
        let forget_ms = p.forget_after_secs.saturating_mul(1000);
        let mut entries = self.entries();
        if entries.len() >= p.capacity && !entries.contains_key(key) {
            entries.retain(|_, e| now.saturating_sub(e.last_failure) < forget_ms);
            if entries.len() >= p.capacity
                && let Some(stalest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&stalest);
            }
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            closed_until: 0,
            last_failure: now,
        });
        if now.saturating_sub(entry.last_failure) >= forget_ms {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let over = entry.failures.saturating_sub(p.free_failures);
        if over == 0 {
            return None;
        }
        let wait = p
            .base_secs
            .saturating_mul(1u64 << (over - 1).min(32))
            .min(p.max_secs);
        entry.closed_until = now.saturating_add(wait.saturating_mul(1000));
        Some(wait)
    }

    /// Forgets `key`'s failures (a successful sign-in to the account).
    pub fn success(&self, key: &str) {
        self.entries().remove(key);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The throttle key of a client address: IPv6 clients by their /64 (one
/// subscriber usually holds a whole /64), IPv4 by the address.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Per-account and per-address throttles of one sign-in form.
#[derive(Debug)]
pub struct SignInThrottle {
    accounts: Throttle,
    addresses: Throttle,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(ThrottlePolicy::PER_ACCOUNT, ThrottlePolicy::PER_ADDRESS)
    }
}

impl SignInThrottle {
    pub fn new(account: ThrottlePolicy, address: ThrottlePolicy) -> Self {
        Self {
            accounts: Throttle::new(account),
            addresses: Throttle::new(address),
        }
    }

    fn account_key(account: &str) -> String {
        format!("acct:{}", account.trim().to_lowercase())
    }

    /// `Err(seconds to wait)` if the account or the address is closed at
    /// `now_ms`: checked before the password is, so a closed key costs no
    /// hash.
    pub fn check(&self, account: &str, peer: Option<IpAddr>, now: u64) -> Result<(), u64> {
        let by_account = self.accounts.check(&Self::account_key(account), now);
        let by_address = peer.map_or(Ok(()), |ip| self.addresses.check(&address_key(ip), now));
        match (by_account, by_address) {
            (Ok(()), Ok(())) => Ok(()),
            (a, b) => Err(a.err().unwrap_or(0).max(b.err().unwrap_or(0))),
        }
    }

    /// A wrong password (or an unknown account) at `now_ms`: counted on
    /// both keys.
    pub fn failure(&self, account: &str, peer: Option<IpAddr>, now: u64) {
        self.accounts.failure(&Self::account_key(account), now);
        if let Some(ip) = peer {
            self.addresses.failure(&address_key(ip), now);
        }
    }

    /// A successful sign-in clears the account's count; the address's
    /// stays (an attacker must not reset it by signing in to their own
    /// account between guesses).
    pub fn success(&self, account: &str) {
        self.accounts.success(&Self::account_key(account));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_success_clears() {
        let t = Throttle::new(ThrottlePolicy {
            free_failures: 2,
            base_secs: 1,
            max_secs: 8,
            forget_after_secs: 100,
            capacity: 10,
        });
        let s = 1_000_000;
        assert_eq!(t.failure("a", s), None);
        assert_eq!(t.failure("a", s), None);
        assert_eq!(t.check("a", s), Ok(()));
        assert_eq!(t.failure("a", s), Some(1));
        assert_eq!(t.check("a", s), Err(1));
        // A second from the failure, to the millisecond.
        assert_eq!(t.check("a", s + 999), Err(1));
        assert_eq!(t.check("a", s + 1000), Ok(()));
        assert_eq!(t.failure("a", s + 1000), Some(2));
        assert_eq!(t.check("a", s + 1001), Err(2));
        assert_eq!(t.failure("a", s + 1000), Some(4));
        assert_eq!(t.failure("a", s + 1000), Some(8));
        assert_eq!(t.failure("a", s + 1000), Some(8));
        assert_eq!(t.check("b", s + 1000), Ok(()));
        t.success("a");
        assert_eq!(t.check("a", s + 1000), Ok(()));
        // Idle long enough: forgotten.
        t.failure("c", 0);
        t.failure("c", 0);
        assert_eq!(t.failure("c", 0), Some(1));
        assert_eq!(t.failure("c", 200_000), None);
    }

    #[test]
    fn the_map_never_grows_past_its_capacity() {
        let t = Throttle::new(ThrottlePolicy {
            capacity: 4,
            ..ThrottlePolicy::PER_ACCOUNT
        });
        for i in 0..100u64 {
            t.failure(&format!("k{i}"), i * 1000);
        }
        assert_eq!(t.len(), 4);
        // The newest keys are the ones kept.
        assert!(t.entries().contains_key("k99"));
    }

    #[test]
    fn addresses_group_ipv6_by_64() -> Result<(), std::net::AddrParseError> {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse()?;
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse()?;
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key("127.0.0.1".parse()?), "ip:127.0.0.1");
        Ok(())
    }
}
