//! The origins a plugin may call over the `http` capability (manifest
//! `allowed_hosts`): scheme, host and port, with a wildcard only for the
//! subdomains of a name (`https://*.bank.example:8443`). Deny by default:
//! a URL matches only an origin listed for it.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// How a listed origin names its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this DNS name (lower case).
    Name(String),
    /// Any name ending in `.{suffix}`, never `suffix` itself
    /// (`*.bank.example` matches `core.bank.example`, not `bank.example`).
    Subdomains(String),
    /// This IP address, listed literally: the one way a plugin may reach a
    /// private, loopback or link-local address.
    Ip(IpAddr),
}

/// Why an `allowed_hosts` entry is not an origin a plugin may be granted;
/// each names the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{text:?} is not a URL: {reason}")]
    NotUrl { text: String, reason: String },
    #[error("{0:?} must be https:// or http://")]
    Scheme(String),
    #[error("{0:?} must not carry a user or password")]
    Credentials(String),
    #[error("{0:?} must be an origin only (scheme://host:port), without a path or query")]
    NotOrigin(String),
    #[error("{0:?}: a wildcard is allowed only as the first label (`*.bank.example`)")]
    WildcardPlace(String),
    #[error("{0:?}: a wildcard needs a name of at least two labels after it")]
    WildcardTooWide(String),
    #[error("{0:?}: a wildcard applies to names, not addresses")]
    WildcardAddress(String),
    #[error("{0:?} has no port")]
    NoPort(String),
    #[error("{0:?} has no host")]
    NoHost(String),
}

/// One entry of `allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    /// `https` or `http`.
    pub scheme: String,
    pub host: HostPattern,
    /// The port; the scheme's default when the entry names none.
    pub port: u16,
    /// The entry as written, for messages and the operator's per-origin
    /// settings (client certificates).
    pub text: String,
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AllowedOrigin {
    /// Parses `scheme://host[:port]` (no path, query, user or password).
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let wildcard = text.contains("://*.");
        let probe = if wildcard {
            text.replacen("://*.", "://", 1)
        } else {
            text.to_owned()
        };
        let url = Url::parse(&probe).map_err(|e| OriginError::NotUrl {
            text: text.to_owned(),
            reason: e.to_string(),
        })?;
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(OriginError::Scheme(text.to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginError::Credentials(text.to_owned()));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(OriginError::NotOrigin(text.to_owned()));
        }
        if probe.matches('*').count() > 0 {
            return Err(OriginError::WildcardPlace(text.to_owned()));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| OriginError::NoPort(text.to_owned()))?;
        let host = match url.host() {
            Some(Host::Domain(name)) if wildcard => {
                if !name.contains('.') {
                    return Err(OriginError::WildcardTooWide(text.to_owned()));
                }
                HostPattern::Subdomains(name.to_owned())
            }
            Some(Host::Domain(name)) => HostPattern::Name(name.to_owned()),
            Some(_) if wildcard => {
                return Err(OriginError::WildcardAddress(text.to_owned()));
            }
            Some(Host::Ipv4(ip)) => HostPattern::Ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => HostPattern::Ip(IpAddr::V6(ip)),
            None => return Err(OriginError::NoHost(text.to_owned())),
        };
        Ok(Self {
            scheme: scheme.to_owned(),
            host,
            port,
            text: text.to_owned(),
        })
    }

    /// Whether `url` is at this origin.
    pub fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme || url.port_or_known_default() != Some(self.port) {
            return false;
        }
        match (&self.host, url.host()) {
            (HostPattern::Name(listed), Some(Host::Domain(name))) => listed == name,
            (HostPattern::Subdomains(suffix), Some(Host::Domain(name))) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostPattern::Ip(listed), Some(Host::Ipv4(ip))) => *listed == IpAddr::V4(ip),
            (HostPattern::Ip(listed), Some(Host::Ipv6(ip))) => *listed == IpAddr::V6(ip),
            _ => false,
        }
    }
}

/// A manifest's `allowed_hosts`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(pub Vec<AllowedOrigin>);

impl AllowedHosts {
    /// Parses every entry; the first bad one is the error.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a String>) -> Result<Self, OriginError> {
        entries
            .into_iter()
            .map(|e| AllowedOrigin::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The entry that allows `url`, if any.
    pub fn allowing(&self, url: &Url) -> Option<&AllowedOrigin> {
        self.0.iter().find(|o| o.matches(url))
    }
}

/// Whether `ip` is an address on the public internet. Loopback, private
/// (RFC 1918, unique-local), link-local, shared (CGNAT), unspecified,
/// documentation, benchmarking, multicast and broadcast addresses are not;
/// an IPv4-mapped IPv6 address is judged as its IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xffc0) == 0xfec0 // site local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 of any v4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| unreachable!("{text}: {e}"))
    }

    #[test]
    fn origins_parse_and_match() -> Result<(), OriginError> {
        let exact = AllowedOrigin::parse("https://core.bank.example:8443")?;
        assert!(exact.matches(&url("https://core.bank.example:8443/v1/x?y=1")));
        assert!(exact.matches(&url("https://CORE.bank.example:8443/")));
        assert!(!exact.matches(&url("https://core.bank.example/")));
        assert!(!exact.matches(&url("http://core.bank.example:8443/")));
        assert!(!exact.matches(&url("https://core.bank.example.evil:8443/")));
        let wild = AllowedOrigin::parse("https://*.bank.example")?;
        assert_eq!(wild.port, 443);
        assert!(wild.matches(&url("https://a.bank.example/")));
        assert!(wild.matches(&url("https://a.b.bank.example/")));
        assert!(!wild.matches(&url("https://bank.example/")));
        assert!(!wild.matches(&url("https://evilbank.example/")));
        let ip = AllowedOrigin::parse("https://127.0.0.1:9443")?;
        assert!(ip.matches(&url("https://127.0.0.1:9443/")));
        assert!(!ip.matches(&url("https://localhost:9443/")));
        for bad in [
            "ftp://x.example",
            "https://x.example/path",
            "https://u:p@x.example",
            "https://a.*.example",
            "https://*.example",
            "https://*.127.0.0.1",
            "x.example",
        ] {
            assert!(AllowedOrigin::parse(bad).is_err(), "{bad} accepted");
        }
        Ok(())
    }

    #[test]
    fn private_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = private.parse().unwrap_or(IpAddr::V4(0.into()));
            assert!(!is_public(ip), "{private} judged public");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1"] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::V4(0.into()));
            assert!(is_public(ip), "{public} judged private");
        }
    }
}
