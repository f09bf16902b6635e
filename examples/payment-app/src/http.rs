//! A minimal HTTPS client: one HTTP/1.1 request per connection, trusting the
//! platform's certificate (the self-signed one `sfop serve` writes into its
//! data dir, or your CA's). A real app would use its HTTP library of choice.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio_rustls::TlsConnector;

/// The platform at one base URL.
pub struct Platform {
    url: String,
    authority: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "expected JSON, got HTTP {} with {:?}",
                self.status,
                self.text()
            )
        })
    }
}

impl Platform {
    /// `url` is `https://host:port` (then `cacert` is the PEM to trust) or
    /// `http://host:port` (a platform started with `--tls off`).
    pub fn new(url: &str, cacert: &Path) -> Result<Self> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => bail!("--url {url:?} must start with https:// or http://"),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            bail!("--url {url:?} must be a base URL like https://127.0.0.1:8443 (no path)");
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => bail!("--url {url:?} must name a port, like https://127.0.0.1:8443"),
        };
        let tls = if tls {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(cacert).with_context(|| {
                format!(
                    "reading the platform's certificate {} (a platform started by \
                     `cargo xtask serve` writes it to sfop-data/tls/cert.pem; \
                     pass --data-dir or --cacert)",
                    cacert.display()
                )
            })?;
            for cert in certs {
                roots
                    .add(cert.with_context(|| format!("parsing {}", cacert.display()))?)
                    .with_context(|| format!("trusting {}", cacert.display()))?;
            }
            if roots.is_empty() {
                bail!("{} holds no PEM certificate", cacert.display());
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .with_context(|| format!("{host:?} is not a host name or IP address"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            authority: authority.to_owned(),
            tls,
        })
    }

    /// The base URL, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request on a fresh connection.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the platform at {}: is it running? Start it with \
                     `cargo xtask serve` in another terminal",
                    self.url
                )
            })?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let res = match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .with_context(|| format!("TLS handshake with {}", self.url))?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                sender.send_request(req).await
            }
            None => {
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender.send_request(req).await
            }
        }
        .with_context(|| format!("{method} {path}"))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// POSTs an `application/x-www-form-urlencoded` form.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Result<Reply> {
        self.send(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            form(fields).into_bytes(),
        )
        .await
    }

    /// An open-banking API call with a bearer token: the JSON answer when
    /// its `rsp_code` is `A0000`, otherwise an error naming the code and
    /// message (business failures come back as HTTP 200 with another code).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json; charset=UTF-8"));
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let reply = self.send(method, path, &headers, bytes).await?;
        let route = path.split('?').next().unwrap_or(path);
        let answer = reply.json().with_context(|| format!("{method} {route}"))?;
        let code = answer["rsp_code"].as_str().unwrap_or_default();
        if code != "A0000" {
            bail!(
                "{method} {route} answered {code} {:?} (HTTP {}, api_tran_id {})",
                answer["rsp_message"].as_str().unwrap_or_default(),
                reply.status,
                answer["api_tran_id"].as_str().unwrap_or("-"),
            );
        }
        Ok(answer)
    }
}

/// `k=v&k=v` with every value percent-encoded.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but the unreserved characters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes `%XX` and `+` in a query-string value.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: Option<&u8>) -> Option<u8> {
    char::from(*b?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The value of query parameter `name` in a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let s = "login inquiry transfer & 홍길동 100%";
        assert_eq!(decode(&encode(s)), s);
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(decode("a+b%2"), "a b%2");
    }

    #[test]
    fn query_params_are_found_and_decoded() {
        let url = "http://localhost:8000/callback?code=abc&scope=login%20inquiry&state=s";
        assert_eq!(query_param(url, "code").as_deref(), Some("abc"));
        assert_eq!(query_param(url, "scope").as_deref(), Some("login inquiry"));
        assert_eq!(query_param(url, "error"), None);
        assert_eq!(query_param("http://x/cb", "code"), None);
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let cert = Path::new("/nonexistent/cert.pem");
        let err = |url: &str| {
            Platform::new(url, cert)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(err("127.0.0.1:8443").contains("must start with https://"));
        assert!(err("https://127.0.0.1").contains("must name a port"));
        assert!(err("https://127.0.0.1:8443/v2.0").contains("no path"));
        assert!(err("https://127.0.0.1:8443").contains("/nonexistent/cert.pem"));
        assert!(Platform::new("http://127.0.0.1:8080/", cert).is_ok());
    }
}
