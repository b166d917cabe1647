//! The operator surface in the lab, as operators and load balancers use it:
//! the web console in a real headless Chromium on a client host (HTTPS with
//! a self-signed certificate), driving a move and watching a power-off; and
//! HAProxy health-checking `/active/web`, so it sends traffic to the active
//! node only while both nodes run a web server. Needs root, busybox,
//! haproxy, chromium and chromium-driver; fails with a clear message
//! otherwise. Screenshots go to `target/lab-artefacts/`.
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::cli::probe::Sample;
use tandem_lab::browser::Browser;
use tandem_lab::lab_cluster::{WebCluster, WebOptions};
use tandem_lab::poll;

const EXE: &str = env!("CARGO_BIN_EXE_tandem");
const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "console-test-token-0123456789abcdef";

fn artefacts() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/lab-artefacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The S1 lab with the web server on both nodes (the group holds the VIP)
/// and the API on every address of each node, over HTTPS.
fn lab() -> WebCluster {
    let o = WebOptions {
        prefix: "tdcon".into(),
        subnet: 80,
        vip_only: true,
        ..WebOptions::default()
    };
    let mut w = WebCluster::new(EXE.as_ref(), &o).expect("lab (needs root and busybox)");
    let dir = w.cluster.dir().to_path_buf();
    let (cert, key, tokens) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("tokens"),
    );
    // The API listens on every address; the browser checks no name.
    poll::self_signed(&dir, &format!("198.18.{}.11", w.lab.subnet)).unwrap();
    std::fs::write(&tokens, format!("ops {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut text = std::fs::read_to_string(&w.cluster.config).unwrap();
    text.push_str(&format!(
        "\n[http]\nlisten = \"0.0.0.0:7080\"\ncert = {:?}\nkey = {:?}\ntokens_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string(),
        tokens.display().to_string()
    ));
    std::fs::write(&w.cluster.config, text).unwrap();
    w.start_servers().unwrap();
    w.start_all().unwrap();
    w
}

/// HAProxy on the client host c1, port 8080, balancing the two nodes'
/// web servers and checking `GET /active/web` on their API port.
fn haproxy(w: &WebCluster) -> std::process::Child {
    assert!(
        Command::new("haproxy").arg("-v").output().is_ok(),
        "haproxy is missing: apt-get install haproxy"
    );
    let s = w.lab.subnet;
    let cfg = w.cluster.dir().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            r#"global
    log stderr format raw local0 warning
defaults
    mode http
    timeout connect 200ms
    timeout client 2s
    timeout server 2s
    retries 0
frontend web
    bind 127.0.0.1:8080
    default_backend nodes
backend nodes
    option httpchk GET /active/web
    http-check expect status 200
    default-server check port 7080 check-ssl verify none inter 100ms fall 1 rise 1
    server n1 198.18.{s}.11:80
    server n2 198.18.{s}.12:80
"#
        ),
    )
    .unwrap();
    w.lab
        .command("c1", "haproxy")
        .unwrap()
        .arg("-f")
        .arg(&cfg)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy")
}

/// `tandem probe` through HAProxy from c1 every 10 ms; its samples.
fn probe(w: &WebCluster) -> (std::process::Child, Arc<Mutex<Vec<Sample>>>) {
    let mut child = w
        .lab
        .command("c1", EXE)
        .unwrap()
        .args([
            "probe",
            "http://127.0.0.1:8080/",
            "--interval",
            "10ms",
            "--timeout",
            "200ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let s2 = samples.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(s) = serde_json::from_str::<Sample>(&line) {
                s2.lock().unwrap().push(s);
            }
        }
    });
    (child, samples)
}

fn answers(samples: &Mutex<Vec<Sample>>) -> Vec<Option<String>> {
    samples
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.answer.clone())
        .collect()
}

/// A client that accepts the lab's self-signed certificate.
fn insecure_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .http_status_as_error(false)
        .build()
        .into()
}

/// Waits until the client's last `n` answers all come from `node`;
/// returns the index of the first of them.
fn wait_answers(samples: &Mutex<Vec<Sample>>, node: &str, n: usize) -> usize {
    let end = Instant::now() + WAIT;
    loop {
        let a = answers(samples);
        if a.len() >= n && a[a.len() - n..].iter().all(|x| x.as_deref() == Some(node)) {
            return a.len() - n;
        }
        assert!(
            Instant::now() < end,
            "HAProxy did not send the client to {node}: last {:?}",
            &a[a.len().saturating_sub(5)..]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn console_in_chromium_and_haproxy_follow_moves_and_a_power_off() {
    let mut w = lab();
    w.cluster
        .wait_for(0, WAIT, "web on n1", |s| {
            s.membership.groups[0].active_on == ["n1"]
                && s.membership.groups[0].phase_here == "started"
        })
        .unwrap();
    let mut haproxy = haproxy(&w);
    let (mut probe_child, samples) = probe(&w);
    // Both web servers answer, yet HAProxy sends everything to n1.
    let settled = wait_answers(&samples, "n1", 30);

    // The browser runs on the client host c1 (this thread moves there).
    tandem_lab::netns::enter(&w.lab.host("c1").unwrap().netns).unwrap();
    let b = Browser::start(9515).unwrap();
    let s = w.lab.subnet;
    b.goto(&format!("https://198.18.{s}.11:7080/")).unwrap();
    b.wait_text("#view", WAIT, |t| t.contains("n1")).unwrap();
    b.wait_text("tr[data-node=n2] [data-field=state]", WAIT, |t| {
        t == "online"
    })
    .unwrap();
    b.wait_text("tr[data-group=web] [data-field=where]", WAIT, |t| t == "n1")
        .unwrap();
    // Accessible: every control has a label or text, and the keyboard
    // reaches the group's buttons; usable on a phone: nothing wider than
    // the screen.
    let unlabelled = b
        .eval(
            "return [...document.querySelectorAll('input,select,button')].filter(e => !(e.labels && e.labels.length) && !e.textContent.trim() && !e.getAttribute('aria-label')).length;",
        )
        .unwrap();
    assert_eq!(unlabelled, serde_json::json!(0), "controls without a label");
    let mut reached = Vec::new();
    for _ in 0..12 {
        reached.push(b.tab(1).unwrap().1);
    }
    assert!(
        reached.iter().any(|a| a == "move"),
        "Tab never reached a Move button: {reached:?}"
    );
    b.resize(390, 844).unwrap();
    let wide = b
        .eval("return document.documentElement.scrollWidth - window.innerWidth;")
        .unwrap();
    assert!(
        wide.as_i64().unwrap_or(1) <= 0,
        "the page is wider than a phone's screen by {wide} px"
    );
    b.screenshot(&artefacts().join("console-0-phone.png"))
        .unwrap();
    b.resize(1280, 900).unwrap();
    b.screenshot(&artefacts().join("console-1-web-on-n1.png"))
        .unwrap();

    // Move web to n2 from the page: token, Move…, pick n2, confirm.
    b.type_into("#token", TOKEN).unwrap();
    b.click("tr[data-group=web] button[data-act=move]").unwrap();
    b.wait_text("#confirm-text", WAIT, |t| t.contains("Move group web"))
        .unwrap();
    b.click("#move-node option:nth-child(2)").unwrap();
    let clicked = answers(&samples).len();
    b.click("#confirm-ok").unwrap();
    b.wait_text("#result", WAIT, |t| t.starts_with("Done"))
        .unwrap();
    b.wait_text("tr[data-group=web] [data-field=where]", WAIT, |t| t == "n2")
        .unwrap();
    let moved_at = wait_answers(&samples, "n2", 30);
    b.screenshot(&artefacts().join("console-2-moved-to-n2.png"))
        .unwrap();
    // While n1 ran web, HAProxy sent nothing to n2; once n2 had it,
    // nothing to n1.
    let a = answers(&samples);
    assert!(
        a[settled..clicked]
            .iter()
            .all(|x| x.as_deref() == Some("n1")),
        "{:?}",
        &a[settled..clicked]
    );

    // Clear the move from the page: web returns to n1 (it prefers n1).
    b.click("tr[data-group=web] button[data-act=clear]")
        .unwrap();
    b.wait_text("#confirm-text", WAIT, |t| {
        t.contains("Clear the operator move")
    })
    .unwrap();
    let cleared = answers(&samples).len();
    let a = answers(&samples);
    assert!(
        a[moved_at..cleared]
            .iter()
            .all(|x| x.as_deref() == Some("n2")),
        "{:?}",
        &a[moved_at..cleared]
    );
    b.click("#confirm-ok").unwrap();
    b.wait_text("tr[data-group=web] [data-field=where]", WAIT, |t| t == "n1")
        .unwrap();
    let back = wait_answers(&samples, "n1", 30);

    // Watch n2's console while n1 loses power: n1 turns dead on the page
    // within a second of n2 declaring it dead, and HAProxy follows.
    b.goto(&format!("https://198.18.{s}.12:7080/")).unwrap();
    b.wait_text("#view", WAIT, |t| t.contains("n2")).unwrap();
    b.wait_text("tr[data-node=n1] [data-field=state]", WAIT, |t| {
        t == "online"
    })
    .unwrap();
    // From c1, like the load balancer: how long after the power-off does
    // n2's /active/web answer 200?
    let cut = Instant::now();
    let flip = std::thread::spawn(move || {
        let agent = insecure_agent();
        let url = format!("https://198.18.{s}.12:7080/active/web");
        loop {
            if agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
                return cut.elapsed();
            }
            assert!(cut.elapsed() < WAIT, "/active/web never answered 200 on n2");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    w.power_off(0).unwrap();
    b.wait_text("tr[data-node=n1] [data-field=state]", WAIT, |t| t == "dead")
        .unwrap();
    let seen_dead = std::time::SystemTime::now();
    b.wait_text("tr[data-group=web] [data-field=where]", WAIT, |t| t == "n2")
        .unwrap();
    b.screenshot(&artefacts().join("console-3-n1-powered-off.png"))
        .unwrap();
    let failed_over = wait_answers(&samples, "n2", 30);
    let status = w.cluster.status(1).unwrap();
    assert_eq!(status.membership.groups[0].active_on, ["n2"]);
    let events: serde_json::Value = insecure_agent()
        .get(format!(
            "https://198.18.{s}.12:7080/api/v1/events?limit=500"
        ))
        .call()
        .unwrap()
        .into_body()
        .read_json()
        .unwrap();
    // /active/web flips within deadtime (500 ms) plus the start time, plus
    // the snapshot's refresh (100 ms) and scheduling slack.
    let flip = flip.join().unwrap();
    let started_ms: u64 = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find_map(|e| {
            e["text"]
                .as_str()
                .and_then(|t| t.strip_prefix("Started web/vip in "))
                .and_then(|t| t.trim_end_matches(" ms").parse().ok())
        })
        .expect("a 'Started web/vip' event on n2");
    eprintln!(
        "/active/web on n2 answered 200 {} ms after n1's power-off (deadtime 500 ms, vip start {started_ms} ms)",
        flip.as_millis()
    );
    assert!(
        flip <= Duration::from_millis(500 + started_ms + 300),
        "/active/web flipped after {flip:?}"
    );
    let dead = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["text"].as_str().unwrap_or("").starts_with("n1 is dead"))
        .cloned()
        .expect("n2 declared n1 dead");
    let dead_ms = dead["time_ms"].as_u64().unwrap();
    let seen_ms = u64::try_from(
        seen_dead
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    eprintln!(
        "console: n1 shown dead {} ms after n2 declared it dead",
        seen_ms.saturating_sub(dead_ms)
    );
    assert!(
        seen_ms.saturating_sub(dead_ms) <= 1000,
        "the page showed n1 dead {} ms after n2 declared it",
        seen_ms - dead_ms
    );
    let a = answers(&samples);
    eprintln!(
        "haproxy: {} answers; settled at {settled}, moved at {moved_at}, back at {back}, failed over at {failed_over}",
        a.len()
    );
    assert!(
        a[failed_over..].iter().all(|x| x.as_deref() == Some("n2")),
        "HAProxy sent traffic elsewhere than n2 after the failover"
    );
    for child in [&mut probe_child, &mut haproxy] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
