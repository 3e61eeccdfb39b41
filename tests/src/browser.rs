//! A real browser for the console's tests: Debian's headless Chromium driven through
//! chromedriver's W3C WebDriver API (plain JSON over HTTP, spoken with the harness's own
//! blocking reqwest client: a dozen commands did not justify a WebDriver crate's dependency
//! tree). One browser serves a whole test; each check is a command or a script run in the page.
//!
//! Chromium trusts the test cluster's certificates by their public keys only
//! (`--ignore-certificate-errors-spki-list`, the SHA-256 of each certificate's key): any other
//! certificate error still fails, so the test's own CA is all it accepts beyond the system's.

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the browser and its driver (`apt-get install chromium chromium-driver`).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The WebDriver id key of an element in answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why the browser is not available, or `None` when it is.
pub fn missing() -> Option<String> {
    [CHROMIUM, CHROMEDRIVER]
        .iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is not installed (apt-get install -y chromium chromium-driver)"))
}

/// Base64 of the SHA-256 of each PEM certificate's public key (SubjectPublicKeyInfo).
pub fn spki_hashes(pem_files: &[PathBuf]) -> Vec<String> {
    pem_files
        .iter()
        .map(|file| {
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
                .unwrap_or_else(|e| panic!("{}: not a PEM certificate: {e}", file.display()));
            let cert = pem
                .parse_x509()
                .unwrap_or_else(|e| panic!("{}: not a certificate: {e}", file.display()));
            let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
            base64::engine::general_purpose::STANDARD.encode(digest)
        })
        .collect()
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element found in the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and one headless Chromium that trusts certificates with these keys.
    pub fn start(trusted_spki: &[String], log: &Path) -> Browser {
        let port = crate::free_port();
        let log_file = std::fs::File::create(log).expect("chromedriver log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        crate::wait_until(Duration::from_secs(20), "chromedriver ready", || {
            let status: Value = http
                .get(format!("{base}/status"))
                .send()
                .ok()?
                .json()
                .ok()?;
            status["value"]["ready"].as_bool().filter(|r| *r)
        });
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(), // CI runs as root
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if !trusted_spki.is_empty() {
            args.push(format!(
                "--ignore-certificate-errors-spki-list={}",
                trusted_spki.join(",")
            ));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("a WebDriver session: {e}"));
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!(
                "WebDriver {path}: {error}: {}",
                answer["value"]["message"].as_str().unwrap_or("")
            );
        }
        answer["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its result.
    pub fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The text of the first element matching `css`, or `None`.
    pub fn text(&self, css: &str) -> Option<String> {
        self.run(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .as_str()
        .map(str::to_string)
    }

    /// Waits until `css` matches an element whose text contains `needle`; its text.
    pub fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(css);
            if let Some(text) = &text
                && text.contains(needle)
            {
                return text.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {timeout:?} for {css:?} to contain {needle:?}; it holds {text:?} (page {})",
                    self.url()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn find(&self, css: &str) -> Element {
        let found = self.command(
            reqwest::Method::POST,
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        Element(
            found[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css:?}"))
                .to_string(),
        )
    }

    pub fn click(&self, element: &Element) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        );
    }

    /// Types `text` into the element (`\u{E007}` is the Enter key).
    pub fn type_into(&self, element: &Element, text: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        );
    }

    /// The cookies the browser holds for the current page, HttpOnly ones included.
    pub fn cookies(&self) -> Vec<Value> {
        self.command(reqwest::Method::GET, "/cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn add_cookie(&self, cookie: Value) {
        self.command(
            reqwest::Method::POST,
            "/cookie",
            Some(json!({"cookie": cookie})),
        );
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Opens a new tab and switches to it; its handle.
    pub fn new_tab(&self) -> String {
        let handle = self.command(
            reqwest::Method::POST,
            "/window/new",
            Some(json!({"type": "tab"})),
        )["handle"]
            .as_str()
            .expect("a window handle")
            .to_string();
        self.switch_to(&handle);
        handle
    }

    pub fn current_tab(&self) -> String {
        self.command(reqwest::Method::GET, "/window", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn switch_to(&self, handle: &str) {
        self.command(
            reqwest::Method::POST,
            "/window",
            Some(json!({"handle": handle})),
        );
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.command(reqwest::Method::GET, "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or(""))
            .expect("a base64 screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
