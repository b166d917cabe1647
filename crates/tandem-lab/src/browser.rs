//! A real headless Chromium, driven through ChromeDriver (W3C WebDriver),
//! for the web console's end-to-end tests. To browse from a lab host, call
//! [`crate::netns::enter`] on the thread first: ChromeDriver, Chromium and
//! the WebDriver connections then all live in that host's namespace, so the
//! browser reaches the lab's addresses as a client there would.
//!
//! The handful of WebDriver calls used here (new session, navigate, find,
//! click, type, text, screenshot, delete session) are plain JSON over
//! HTTP; they are made with the blocking `ureq` client rather than an
//! async WebDriver crate, so a test drives the browser from ordinary
//! threads.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// The W3C key for a web element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process and one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("base", &self.base).finish()
    }
}

/// Fails with the install command when Chromium or ChromeDriver is absent.
pub fn require() -> anyhow::Result<()> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(p).exists() {
            bail!("{p} is missing: apt-get install chromium chromium-driver");
        }
    }
    Ok(())
}

impl Browser {
    /// Starts ChromeDriver on `port` (in the calling thread's network
    /// namespace) and a headless Chromium session that accepts self-signed
    /// certificates.
    pub fn start(port: u16) -> anyhow::Result<Self> {
        require()?;
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start chromedriver")?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut b = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = b.call("GET", "/status", None)
                && v["ready"] == json!(true)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().context("browser profile")?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.keep().display())]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id from chromedriver: {v}"))?
            .to_string();
        Ok(b)
    }

    /// Calls the WebDriver endpoint `path`; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self
                .agent
                .post(&url)
                .send_json(b.unwrap_or_else(|| json!({}))),
        }
        .with_context(|| format!("WebDriver {method} {path}"))?;
        let ok = resp.status().is_success();
        let v: Value = resp
            .into_body()
            .read_json()
            .with_context(|| format!("WebDriver {method} {path}: answer"))?;
        if !ok {
            bail!("WebDriver {method} {path}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Loads `url`, again every 200 ms for up to 10 s while Chromium shows
    /// its network-error page instead (a server that is still binding, or a
    /// route that is still settling, is what a person would reload past);
    /// fails naming Chromium's error code (e.g. `ERR_CONNECTION_REFUSED`)
    /// and every attempt's, so a server that never answers is not hidden.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut errors = Vec::new();
        loop {
            let code = match self.call("POST", &self.s("/url"), Some(json!({"url": url}))) {
                // ChromeDriver reports some failures itself ("net::ERR_…").
                Err(e) => match e.to_string().split("net::").nth(1) {
                    Some(rest) => Some(
                        rest.split(['\\', '"', ' '])
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    ),
                    None => return Err(e),
                },
                // Others load Chromium's error page.
                Ok(_) => self.net_error()?,
            };
            let Some(code) = code else {
                if !errors.is_empty() {
                    eprintln!("browser: {url} loaded after {errors:?}");
                }
                return Ok(());
            };
            match errors.last_mut() {
                Some((last, n)) if *last == code => *n += 1,
                _ => errors.push((code, 1)),
            }
            if Instant::now() > deadline {
                bail!("{url} did not load in 10 s: Chromium showed (code, times) {errors:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Chromium's error code when the page is its network-error page.
    fn net_error(&self) -> anyhow::Result<Option<String>> {
        let v = self.eval(
            "const b = document.body; if (!b || !b.classList.contains('neterror')) return null; \
             const c = document.querySelector('.error-code'); \
             return (c && c.textContent.trim()) || 'a network error page';",
        )?;
        Ok(v.as_str().map(str::to_string))
    }

    /// The first element matching the CSS `selector`, if any.
    pub fn find(&self, selector: &str) -> anyhow::Result<Option<String>> {
        let body = json!({"using": "css selector", "value": selector});
        match self.call("POST", &self.s("/element"), Some(body)) {
            Ok(v) => Ok(v[ELEMENT].as_str().map(str::to_string)),
            Err(e) if e.to_string().contains("no such element") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The text of the first element matching `selector` ("" if none;
    /// found again if the page replaced it meanwhile).
    pub fn text(&self, selector: &str) -> anyhow::Result<String> {
        let mut tries = 0;
        loop {
            let Some(id) = self.find(selector)? else {
                return Ok(String::new());
            };
            match self.call("GET", &self.s(&format!("/element/{id}/text")), None) {
                Err(e) if e.to_string().contains("stale element") && tries < 3 => tries += 1,
                r => return r.map(|v| v.as_str().unwrap_or("").to_string()),
            }
        }
    }

    /// Clicks the first element matching `selector` (found again if the
    /// page replaced it meanwhile).
    pub fn click(&self, selector: &str) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            let id = self
                .find(selector)?
                .ok_or_else(|| anyhow!("nothing matches {selector}"))?;
            match self.call("POST", &self.s(&format!("/element/{id}/click")), None) {
                Err(e) if e.to_string().contains("stale element") && tries < 3 => tries += 1,
                r => return r.map(|_| ()),
            }
        }
    }

    /// Types `text` into the first element matching `selector`.
    pub fn type_into(&self, selector: &str, text: &str) -> anyhow::Result<()> {
        let id = self
            .find(selector)?
            .ok_or_else(|| anyhow!("nothing matches {selector}"))?;
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        )
        .map(|_| ())
    }

    /// Waits (polling every 50 ms, at most `timeout`) until the text of
    /// `selector` satisfies `want`; returns the text.
    pub fn wait_text(
        &self,
        selector: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.text(selector)?;
            if want(&t) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                let url = self.call("GET", &self.s("/url"), None).unwrap_or_default();
                let page = self
                    .call("GET", &self.s("/source"), None)
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .unwrap_or_else(|e| e.to_string());
                bail!(
                    "{selector} still reads {t:?} after {timeout:?} (page {url}: {:?})",
                    page.chars().take(600).collect::<String>()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `script` (a function body; `return` gives the answer) in the
    /// page.
    pub fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Resizes the window (e.g. to a phone's 390 × 844).
    pub fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": height})),
        )
        .map(|_| ())
    }

    /// Presses Tab `n` times in the page; returns the focused element's
    /// text and its `data-act` attribute.
    pub fn tab(&self, n: usize) -> anyhow::Result<(String, String)> {
        let keys: Vec<Value> = (0..n)
            .flat_map(|_| {
                [
                    json!({"type": "keyDown", "value": "\u{E004}"}),
                    json!({"type": "keyUp", "value": "\u{E004}"}),
                ]
            })
            .collect();
        self.call(
            "POST",
            &self.s("/actions"),
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": keys}]})),
        )?;
        let v = self.eval(
            "const e = document.activeElement; return [e.textContent.trim(), e.getAttribute('data-act') || ''];",
        )?;
        Ok((
            v[0].as_str().unwrap_or("").to_string(),
            v[1].as_str().unwrap_or("").to_string(),
        ))
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine as _;
        let v = self.call("GET", &self.s("/screenshot"), None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .context("screenshot data")?;
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.s(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
