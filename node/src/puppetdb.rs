//! PuppetDB as the source of `--query` targets (`porch server --puppetdb-url`), as in PE: the
//! query goes to PuppetDB's `/pdb/query/v4` untouched — PQL text or its AST — and the
//! `certname` of every result row becomes a node of the job.
//!
//! The node presents its own Puppet certificate ([`porch_tls::TlsIdentity`]), trusts only
//! the Puppet CA and checks the CRL; a reloaded certificate is used from the next query on.
//! Every query has a deadline and a bounded answer, and each way it can fail is a
//! [`PuppetDbError`] that names the PuppetDB URL.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use porch_tls::TlsIdentity;
use serde_json::Value;

/// Largest PuppetDB answer read. A query selecting whole fact sets of many nodes can be
/// large; past this the query fails and asks for a `[certname]` projection.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Longest excerpt of PuppetDB's text quoted in an error.
const EXCERPT_CHARS_MAX: usize = 600;

/// Where PuppetDB is and how long a query may take.
#[derive(Clone, Debug)]
pub struct PuppetDbConfig {
    /// `https://host:8081` (or a path prefix behind a proxy); no trailing slash.
    pub url: String,
    /// Deadline for one query, connecting included.
    pub query_timeout: Duration,
}

/// Why a query could not be answered. The first two are the query's fault (400); the others
/// are PuppetDB's or the network's (502/503).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PuppetDbError {
    #[error("PuppetDB at {url} rejected the query: {message}")]
    Rejected { url: String, message: String },
    #[error(
        "PuppetDB at {url} answered row {index} without a certname ({row}): select an entity \
         whose rows name their node, or project certname, e.g. inventory[certname] {{ ... }}"
    )]
    RowWithoutCertname {
        url: String,
        index: usize,
        row: String,
    },
    #[error("cannot reach PuppetDB at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("PuppetDB at {url} did not answer within {} ms", .timeout.as_millis())]
    TimedOut { url: String, timeout: Duration },
    #[error(
        "PuppetDB at {url} refused porch's certificate '{certname}' (HTTP {status}): {message}"
    )]
    Refused {
        url: String,
        certname: String,
        status: u16,
        message: String,
    },
    #[error("PuppetDB at {url} answered {what}")]
    BadAnswer { url: String, what: String },
}

impl PuppetDbError {
    /// Whether the query itself is at fault (PE answers these with `query-error`).
    pub fn is_query_error(&self) -> bool {
        matches!(
            self,
            PuppetDbError::Rejected { .. } | PuppetDbError::RowWithoutCertname { .. }
        )
    }

    /// Whether PuppetDB could not be reached in time (503) rather than answering wrongly (502).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PuppetDbError::Unreachable { .. } | PuppetDbError::TimedOut { .. }
        )
    }
}

/// A PuppetDB client bound to this node's TLS identity.
pub struct PuppetDb {
    config: PuppetDbConfig,
    query_url: String,
    tls: Option<Arc<TlsIdentity>>,
    /// The HTTP client and the TLS configuration it was built from: rebuilt when the identity
    /// reloads its files, so a renewed certificate or a new CRL applies to the next query.
    client: Mutex<Option<(Option<Arc<rustls::ClientConfig>>, reqwest::Client)>>,
}

impl std::fmt::Debug for PuppetDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PuppetDb")
            .field("url", &self.config.url)
            .finish()
    }
}

impl PuppetDb {
    /// `tls` is the node's identity; an `https` URL needs one (an `http` URL, PuppetDB's
    /// local cleartext port, does not).
    pub fn new(config: PuppetDbConfig, tls: Option<Arc<TlsIdentity>>) -> Result<PuppetDb, String> {
        let url = &config.url;
        if url.starts_with("https://") && tls.is_none() {
            return Err(format!(
                "--puppetdb-url {url}: PuppetDB over https needs this node's certificate, and \
                 --insecure-http serves without one (use PuppetDB's http:// port, or TLS)"
            ));
        }
        Ok(PuppetDb {
            query_url: format!("{url}/pdb/query/v4"),
            config,
            tls,
            client: Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    fn client(&self) -> Result<reqwest::Client, PuppetDbError> {
        let tls = self
            .tls
            .as_ref()
            .map(|identity| identity.http_client_config());
        let mut cached = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((built_from, client)) = cached.as_ref() {
            let same = match (&tls, built_from) {
                (Some(now), Some(then)) => Arc::ptr_eq(now, then),
                (None, None) => true,
                _ => false,
            };
            if same {
                return Ok(client.clone());
            }
        }
        let timeout = self.config.query_timeout;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(tls) = &tls {
            builder = builder.use_preconfigured_tls((**tls).clone());
        }
        let client = builder.build().map_err(|e| PuppetDbError::Unreachable {
            url: self.config.url.clone(),
            reason: format!("cannot build an HTTP client: {e}"),
        })?;
        *cached = Some((tls, client.clone()));
        Ok(client)
    }

    /// The certnames `query` selects, sorted and without duplicates. `query` is PQL text, or
    /// its AST as JSON (`["from", "nodes", ...]`), sent to PuppetDB as it came.
    pub async fn certnames(&self, query: &str) -> Result<Vec<String>, PuppetDbError> {
        let url = &self.config.url;
        let body = request_body(query).map_err(|message| PuppetDbError::Rejected {
            url: url.clone(),
            message,
        })?;
        let client = self.client()?;
        let started = Instant::now();
        let sent = client
            .post(&self.query_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body)
            .send()
            .await;
        let mut response = sent.map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if answer.len() + chunk.len() > ANSWER_BYTES_MAX {
                return Err(PuppetDbError::BadAnswer {
                    url: url.clone(),
                    what: format!(
                        "more than {} MiB: narrow the query or project certname \
                         (inventory[certname] {{ ... }})",
                        ANSWER_BYTES_MAX / (1024 * 1024)
                    ),
                });
            }
            answer.extend_from_slice(&chunk);
        }
        let certname = self
            .tls
            .as_ref()
            .map(|identity| identity.certname())
            .unwrap_or_default();
        let parsed = parse_answer(url, &certname, status, &answer);
        tracing::debug!(
            "PuppetDB query {query:?}: HTTP {status}, {} bytes, {} ms",
            answer.len(),
            started.elapsed().as_millis()
        );
        parsed
    }

    fn transport_error(&self, error: &reqwest::Error) -> PuppetDbError {
        let url = self.config.url.clone();
        if error.is_timeout() {
            return PuppetDbError::TimedOut {
                url,
                timeout: self.config.query_timeout,
            };
        }
        let reason = porch_tls::describe_tls_error(error).unwrap_or_else(|| error_chain(error));
        PuppetDbError::Unreachable { url, reason }
    }
}

/// `{"query": ...}` for PuppetDB's POST form: the AST as JSON when the text is one, else the
/// PQL string. PuppetDB itself judges either.
pub fn request_body(query: &str) -> Result<Value, String> {
    let trimmed = query.trim();
    if trimmed.starts_with('[') {
        let ast: Value = serde_json::from_str(trimmed)
            .map_err(|e| format!("the query AST is not valid JSON: {e}"))?;
        return Ok(serde_json::json!({ "query": ast }));
    }
    Ok(serde_json::json!({ "query": trimmed }))
}

/// Turns PuppetDB's answer into certnames: 200 with an array of rows, each naming a
/// `certname`; 400 is PuppetDB's verdict on the query; anything else is PuppetDB's fault.
pub fn parse_answer(
    url: &str,
    certname: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<String>, PuppetDbError> {
    let url = url.to_string();
    match status {
        200 => {}
        400 => {
            return Err(PuppetDbError::Rejected {
                url,
                message: excerpt(body),
            });
        }
        401 | 403 => {
            return Err(PuppetDbError::Refused {
                url,
                certname: certname.to_string(),
                status,
                message: excerpt(body),
            });
        }
        other => {
            return Err(PuppetDbError::BadAnswer {
                url,
                what: format!("HTTP {other}: {}", excerpt(body)),
            });
        }
    }
    let rows: Value = serde_json::from_slice(body).map_err(|e| PuppetDbError::BadAnswer {
        url: url.clone(),
        what: format!("something that is not JSON ({e}): {}", excerpt(body)),
    })?;
    let Value::Array(rows) = rows else {
        return Err(PuppetDbError::BadAnswer {
            url,
            what: format!("JSON that is not an array of rows: {}", excerpt(body)),
        });
    };
    let mut names = BTreeSet::new();
    for (index, row) in rows.iter().enumerate() {
        match row.get("certname").and_then(Value::as_str) {
            Some(name) => {
                names.insert(name.to_string());
            }
            None => {
                return Err(PuppetDbError::RowWithoutCertname {
                    url,
                    index,
                    row: excerpt(row.to_string().as_bytes()),
                });
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// The start of a body as one line of text, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".into();
    }
    match one_line.char_indices().nth(EXCERPT_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// An error and its causes, `outer: inner: innermost`, without repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://puppetdb.example:8081";

    fn parse(status: u16, body: &str) -> Result<Vec<String>, PuppetDbError> {
        parse_answer(URL, "porch1", status, body.as_bytes())
    }

    #[test]
    fn every_row_certname_becomes_a_node_once_sorted() {
        let body = r#"[{"certname":"web2","name":"os","value":{}},
                       {"certname":"web1","name":"os"},{"certname":"web2","name":"kernel"}]"#;
        assert_eq!(parse(200, body).unwrap(), vec!["web1", "web2"]);
        assert_eq!(parse(200, "[]").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn puppetdb_verdict_on_bad_pql_is_a_query_error_with_its_message() {
        let error = parse(
            400,
            "PQL parse error at line 1, column 23:\n\nnodes { bogus\n",
        )
        .unwrap_err();
        assert!(error.is_query_error());
        assert_eq!(
            error.to_string(),
            format!(
                "PuppetDB at {URL} rejected the query: PQL parse error at line 1, column 23: nodes {{ bogus"
            )
        );
    }

    #[test]
    fn a_row_without_certname_is_a_query_error_naming_the_row() {
        let error = parse(200, r#"[{"certname":"a"},{"name":"production"}]"#).unwrap_err();
        assert!(error.is_query_error());
        let text = error.to_string();
        assert!(
            text.contains("row 1 without a certname ({\"name\":\"production\"})")
                && text.contains("project certname"),
            "{text}"
        );
        assert!(
            parse(200, r#"[{"certname":7}]"#)
                .unwrap_err()
                .is_query_error()
        );
    }

    #[test]
    fn garbage_is_a_bad_answer_naming_the_url() {
        for (status, body, expected) in [
            (200, "<html>proxy</html>", "something that is not JSON"),
            (200, r#"{"certname":"a"}"#, "not an array of rows"),
            (500, "boom", "HTTP 500: boom"),
            (404, "", "HTTP 404: (empty body)"),
        ] {
            let error = parse(status, body).unwrap_err();
            assert!(!error.is_query_error() && !error.is_unavailable());
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("PuppetDB at {URL} answered "))
                    && text.contains(expected),
                "status {status}, body {body:?}: expected {expected:?} in {text:?}"
            );
        }
    }

    #[test]
    fn a_refused_certificate_names_the_certname() {
        let error = parse(403, "Forbidden").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("PuppetDB at {URL} refused porch's certificate 'porch1' (HTTP 403): Forbidden")
        );
    }

    #[test]
    fn long_answers_are_quoted_in_part() {
        let long = "x".repeat(10_000);
        let text = parse(500, &long).unwrap_err().to_string();
        assert!(
            text.len() < 1000 && text.ends_with('…'),
            "{} chars",
            text.len()
        );
    }

    #[test]
    fn pql_text_and_ast_travel_as_they_came() {
        assert_eq!(
            request_body(r#" inventory[certname] { facts.os.family = "Debian" } "#).unwrap(),
            serde_json::json!({"query": r#"inventory[certname] { facts.os.family = "Debian" }"#})
        );
        assert_eq!(
            request_body(r#"["from","nodes",["=","certname","a"]]"#).unwrap(),
            serde_json::json!({"query": ["from", "nodes", ["=", "certname", "a"]]})
        );
        assert!(
            request_body("[\"from\",")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn https_without_the_nodes_certificate_is_refused_at_start() {
        let config = |url: &str| PuppetDbConfig {
            url: url.into(),
            query_timeout: Duration::from_secs(1),
        };
        assert!(
            PuppetDb::new(config(URL), None)
                .unwrap_err()
                .contains("needs this node's certificate")
        );
        assert!(PuppetDb::new(config("http://127.0.0.1:8080"), None).is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_puppetdb_is_unavailable_naming_the_url() {
        // A port that was just free: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let puppetdb = PuppetDb::new(
            PuppetDbConfig {
                url: url.clone(),
                query_timeout: Duration::from_secs(2),
            },
            None,
        )
        .unwrap();
        let error = puppetdb.certnames("nodes {}").await.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot reach PuppetDB at {url}: ")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_puppetdb_that_never_answers_times_out() {
        // Accepts connections, never responds.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let puppetdb = PuppetDb::new(
            PuppetDbConfig {
                url: url.clone(),
                query_timeout: Duration::from_millis(300),
            },
            None,
        )
        .unwrap();
        let started = Instant::now();
        let error = puppetdb.certnames("nodes {}").await.unwrap_err();
        assert_eq!(
            error,
            PuppetDbError::TimedOut {
                url,
                timeout: Duration::from_millis(300)
            }
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
