//! The web console, driven in a real headless Chromium through chromedriver (WebDriver)
//! against a spawned server: the demo flow, a 402 and a 409 in plain words, the operator
//! flow, and a customer key refused by the operator pages. Screenshots go to
//! target/console-screenshots/.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium
//! chromium-driver`); `scripts/test.sh` and `.ci/run` install them when missing. Without
//! chromedriver these tests fail, saying so.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{spawn_app_with, Options, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "browser-test-operator-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// One browser at a time: the machine running the suite may have few cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn chromedriver() -> PathBuf {
    find_program("CHROMEDRIVER", &["chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed, so the console's browser tests cannot run. \
             Install Debian's packages: `apt-get install -y chromium chromium-driver` \
             (scripts/test.sh and .ci/run do this when missing), or set CHROMEDRIVER and CHROMIUM \
             to the programs' paths."
        )
    })
}

fn chromium() -> PathBuf {
    find_program(
        "CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    )
    .unwrap_or_else(|| {
        panic!("chromium is not installed: `apt-get install -y chromium chromium-driver`")
    })
}

/// A chromedriver process on a free local port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let program = chromedriver();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < WAIT,
            "chromedriver did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver
}

/// A browser session, its driver, and the server under test.
struct Browser {
    client: Client,
    _driver: Driver,
    app: TestApp,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn browser(options: Options) -> Browser {
    let turn = ONE_BROWSER.lock().await;
    let app = spawn_app_with(options).await;
    let driver = start_driver().await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium");
    client.set_window_size(1280, 1000).await.unwrap();
    Browser {
        client,
        _driver: driver,
        app,
        _turn: turn,
    }
}

impl Browser {
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.app.url))
            .await
            .unwrap();
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
    }

    /// Clicks the element once it is shown and enabled, finding it afresh each try (the
    /// console re-renders lists, which replaces their elements).
    async fn click(&self, selector: &str) {
        let started = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(selector)).await {
                let ready = element.is_displayed().await.unwrap_or(false)
                    && element.is_enabled().await.unwrap_or(false);
                if ready && element.click().await.is_ok() {
                    return;
                }
            }
            if started.elapsed() > WAIT {
                self.screenshot(&format!("timeout-{}", slug(selector)))
                    .await;
                panic!("{selector}: waited {WAIT:?} for it to be shown and enabled");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, selector: &str, text: &str) {
        let element = self.css(selector).await;
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.unwrap_or_default()
    }

    async fn wait_until<F, Fut>(&self, what: &str, condition: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !check().await {
            if started.elapsed() > WAIT {
                self.screenshot(&format!("timeout-{}", slug(what))).await;
                panic!("{what}: waited {WAIT:?} for it {condition}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element's text satisfies `accept`; returns that text.
    async fn wait_text(
        &self,
        selector: &str,
        condition: &str,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(selector)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if accept(&text) {
                return text;
            }
            if started.elapsed() > WAIT {
                self.screenshot(&format!("timeout-{}", slug(selector)))
                    .await;
                let error = self.text("#error-text").await;
                panic!("{selector}: waited {WAIT:?} for text {condition}; last {text:?}; page error {error:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn displayed(&self, selector: &str) -> bool {
        match self.client.find(Locator::Css(selector)).await {
            Ok(element) => element.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// A screenshot of the whole page from its top, for the README.
    async fn page_screenshot(&self, name: &str) {
        self.script(
            "window.scrollTo(0, 0); document.activeElement && document.activeElement.blur();",
        )
        .await;
        let height = self
            .script("return document.documentElement.scrollHeight;")
            .await;
        let width = self.script("return window.outerWidth;").await;
        let (width, height) = (
            width.as_u64().unwrap_or(1280) as u32,
            height.as_u64().unwrap_or(1000) as u32,
        );
        self.client
            .set_window_size(width, height.clamp(600, 2000) + 140)
            .await
            .unwrap();
        self.screenshot(name).await;
        self.client.set_window_size(width, 1000).await.unwrap();
    }

    async fn screenshot(&self, name: &str) {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let backend = if self.app.dir.is_postgres() {
            "pg"
        } else {
            "sqlite"
        };
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(dir.join(format!("{name}-{backend}.png")), png).unwrap();
        }
    }

    async fn script(&self, code: &str) -> Value {
        self.client.execute(code, vec![]).await.unwrap()
    }

    async fn sign_in(&self, key: &str) {
        self.open("/").await;
        self.type_into("#api-key", key).await;
        self.click("#sign-in").await;
        self.wait_text("#balance-summary", "to show the balance", |t| {
            t.contains("available")
        })
        .await;
    }

    /// Finds event 139574 by its id and selects people 789 and 790.
    async fn select_example_people(&self) {
        self.type_into("#event-search", "139574").await;
        self.click("#event-search-form button[type=submit]").await;
        self.click("button[data-event-id='139574']").await;
        // They are not on the first page: find each by name; the selection stays.
        for id in ["789", "790"] {
            self.type_into("#f-search", &format!("Person {id}")).await;
            self.click("#people-filter button[type=submit]").await;
            self.wait_text("#people-body", "to show only that person", |t| {
                t.contains(&format!("Person {id}")) && !t.contains("Person 100")
            })
            .await;
            self.click(&format!("input[data-personnel-id='{id}']"))
                .await;
        }
        self.wait_text("#selected-count", "to be 2", |t| t == "2")
            .await;
    }

    async fn close(self) {
        let Browser { client, app, .. } = self;
        client.close().await.unwrap();
        app.assert_ledger_ok().await;
    }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn with_worker() -> Options {
    Options {
        worker: true,
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Options::default()
    }
}

#[tokio::test]
async fn the_demo_flow_unlocks_two_emails_for_30_credits() {
    let b = browser(with_worker()).await;
    let (_, key) = b.app.account(1000).await;
    b.sign_in(&key).await;
    assert_eq!(b.text("#balance-available").await, "1,000");
    b.select_example_people().await;
    b.click("#precheck-btn").await;
    b.wait_text("#pc-cost", "to be 30 credits", |t| t == "30 credits")
        .await;
    assert_eq!(b.text("#pc-locked").await, "2");
    assert_eq!(b.text("#pc-unlocked").await, "0");
    assert_eq!(b.text("#pc-after").await, "970");
    assert_eq!(
        b.text("#unlock-btn").await,
        "Unlock 2 emails for 30 credits"
    );
    b.screenshot("customer-precheck").await;
    // Nothing is charged by the precheck.
    assert_eq!(b.app.balance(&key).await["availableCredits"], 1000);

    // Layout shifts while the task progresses (not those right after the click).
    b.script(
        "window.__shifts = []; new PerformanceObserver((list) => { for (const e of list.getEntries()) \
         if (!e.hadRecentInput) window.__shifts.push(e.value); }).observe({type: 'layout-shift'});",
    )
    .await;
    b.click("#unlock-btn").await;
    b.wait_text("#task-status", "to be completed", |t| t == "completed")
        .await;
    let items = b
        .wait_text("#task-items", "to show both emails", |t| {
            t.contains("jane.doe@acme.example") && t.contains("john.roe@acme.example")
        })
        .await;
    assert!(items.contains("unlocked"), "{items}");
    b.wait_text("#balance-available", "to fall by 30", |t| t == "970")
        .await;
    assert_eq!(
        b.text("#task-counts").await,
        "2 of 2 done: 2 unlocked, 0 failed; 30 credits charged"
    );
    // The people table now shows the emails too, and the task is among the recent ones.
    b.wait_text("#people-body", "to show the unlocked email", |t| {
        t.contains("john.roe@acme.example")
    })
    .await;
    b.wait_text("#recent", "to list the task", |t| {
        !t.contains("No tasks yet")
    })
    .await;
    // (A text area shows CRLF line ends as LF.)
    b.click("#copy-csv").await;
    let exported = b
        .script("return document.getElementById('csv-text').value;")
        .await;
    assert_eq!(
        exported.as_str().unwrap(),
        "personnel_id,full_name,company_name,email,status,error_code\n\
         789,Person 789,Acme,jane.doe@acme.example,unlocked,\n\
         790,Person 790,Acme,john.roe@acme.example,unlocked,\n"
    );
    let shifts = b.script("return window.__shifts;").await;
    let total: f64 = shifts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .sum();
    assert!(total < 0.01, "layout shifts while the task ran: {shifts}");
    b.page_screenshot("customer-unlocked").await;
    let balance = b.app.balance(&key).await;
    assert_eq!(balance["availableCredits"], 970);
    assert_eq!(balance["heldCredits"], 0);

    // Legible at 390 px: one column, nothing wider than the window.
    b.client.set_window_size(390, 900).await.unwrap();
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "horizontal overflow at 390 px: {overflow}"
    );
    b.screenshot("customer-390px").await;

    // The key lives in session storage only: not in the URL, not in a cookie.
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(&key));
    let cookies = b.script("return document.cookie;").await;
    assert_eq!(cookies, json!(""));
    b.close().await;
}

#[tokio::test]
async fn a_402_is_shown_with_the_amounts_in_plain_words() {
    let b = browser(with_worker()).await;
    let (_, key) = b.app.account(30).await;
    b.sign_in(&key).await;
    b.select_example_people().await;
    b.click("#precheck-btn").await;
    b.wait_text("#pc-cost", "to be 30 credits", |t| t == "30 credits")
        .await;
    // Meanwhile the same account spends half of its credits elsewhere.
    let (status, body) = b.app.unlock_ids(&key, &["100"]).await;
    assert_eq!(status, 201, "{body}");
    b.app.drain().await;
    b.click("#unlock-btn").await;
    let message = b
        .wait_text("#error-text", "to explain the 402", |t| !t.is_empty())
        .await;
    assert!(
        message.contains("costs 30 credits") && message.contains("has 15 available"),
        "{message}"
    );
    assert!(message.contains("Nothing was charged"), "{message}");
    b.screenshot("customer-402").await;
    // A new precheck says the same before anything is tried.
    b.click("#precheck-btn").await;
    b.wait_text("#pc-note", "to say credits are short", |t| {
        t.starts_with("Not enough credits")
    })
    .await;
    assert_eq!(b.text("#unlock-btn").await, "Nothing to unlock");
    assert_eq!(b.app.balance(&key).await["availableCredits"], 15);
    b.close().await;
}

#[tokio::test]
async fn a_409_names_the_task_that_holds_the_people() {
    // No worker: the competing task stays pending while the browser tries.
    let b = browser(Options {
        worker: false,
        ..Options::default()
    })
    .await;
    let (_, key) = b.app.account(1000).await;
    b.sign_in(&key).await;
    b.select_example_people().await;
    b.click("#precheck-btn").await;
    b.wait_text("#pc-cost", "to be 30 credits", |t| t == "30 credits")
        .await;
    let (status, body) = b.app.unlock_ids(&key, &["789", "790"]).await;
    assert_eq!(status, 201, "{body}");
    let task_id = body["task_id"].as_str().unwrap().to_string();
    b.click("#unlock-btn").await;
    let message = b
        .wait_text("#error-text", "to explain the 409", |t| !t.is_empty())
        .await;
    assert!(
        message.contains("already being unlocked by task") && message.contains(&task_id),
        "{message}"
    );
    // The task that holds them is listed, and the balance shows its hold.
    b.wait_text("#recent", "to list the holding task", |t| {
        t.contains(&task_id)
    })
    .await;
    b.wait_text("#balance-available", "to show the hold", |t| t == "970")
        .await;
    b.screenshot("customer-409").await;
    // Only the first task holds credits.
    assert_eq!(b.app.balance(&key).await["heldCredits"], 30);
    b.app.drain().await;
    b.close().await;
}

#[tokio::test]
async fn an_operator_creates_an_account_grants_credits_and_issues_a_key_that_signs_in() {
    let b = browser(with_worker()).await;
    b.open("/admin/").await;
    b.type_into("#admin-token", ADMIN_TOKEN).await;
    b.click("#sign-in").await;
    b.wait_until("#workspace", "to be shown", || b.displayed("#workspace"))
        .await;

    b.type_into("#new-name", "Browser Co").await;
    b.click("#create-account").await;
    let first_key = b
        .wait_text("#new-key", "to show the new key", |t| t.starts_with("sk_"))
        .await;
    b.click("#hide-key").await;
    b.wait_text("#account-title", "to name the account", |t| {
        t.contains("Browser Co")
    })
    .await;

    b.type_into("#grant-amount", "500").await;
    b.click("#grant").await;
    b.wait_text("#error-text", "to confirm the grant", |t| {
        t.starts_with("Granted 500 gift credits")
    })
    .await;
    b.wait_text("#accounts-body", "to show the balance", |t| {
        t.contains("Browser Co") && t.contains("500")
    })
    .await;

    b.click("#create-key").await;
    let second_key = b
        .wait_text("#new-key", "to show another key", |t| {
            t.starts_with("sk_") && t != first_key
        })
        .await;
    // Revoke the account's first key from its list; the second stays.
    b.click("#keys li:first-child button").await;
    b.wait_text("#error-text", "to confirm the revocation", |t| {
        t.ends_with("is revoked.")
    })
    .await;
    b.wait_text("#keys", "to show the revoked key", |t| {
        t.contains("revoked")
    })
    .await;
    let (status, _) = b.app.get(&first_key, "/external/credits/balance").await;
    assert_eq!(status, 401, "the revoked key is refused");
    b.click("#verify").await;
    b.wait_text("#ledger-result", "to report the ledger", |t| {
        t.starts_with("Ledger OK")
    })
    .await;
    b.page_screenshot("operator-console").await;
    b.client.set_window_size(390, 900).await.unwrap();
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "horizontal overflow at 390 px: {overflow}"
    );
    b.screenshot("operator-390px").await;
    b.client.set_window_size(1280, 1000).await.unwrap();

    // The account exists with the grant, and its new key works in the customer console.
    let accounts = b.app.store.list_accounts().await.unwrap();
    assert!(accounts
        .iter()
        .any(|(a, keys)| a.name == "Browser Co" && *keys == 1));
    b.sign_in(&second_key).await;
    b.wait_text("#balance-available", "to show the granted credits", |t| {
        t == "500"
    })
    .await;
    let actors: Vec<String> = b
        .app
        .store
        .audit_log(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.actor)
        .collect();
    assert!(
        actors.len() >= 4 && actors.iter().all(|a| a == "admin-http"),
        "{actors:?}"
    );
    b.close().await;
}

#[tokio::test]
async fn the_operator_pages_refuse_a_customer_key_and_say_when_they_are_off() {
    let b = browser(with_worker()).await;
    let (_, key) = b.app.account(100).await;
    b.open("/admin/").await;
    b.type_into("#admin-token", &key).await;
    b.click("#sign-in").await;
    let message = b
        .wait_text("#error-text", "to refuse the key", |t| !t.is_empty())
        .await;
    assert!(message.contains("customer API key"), "{message}");
    assert!(!b.displayed("#workspace").await);
    assert!(b.displayed("#sign-in-panel").await);
    b.screenshot("operator-refuses-customer-key").await;
    b.close().await;

    // A server without an operator token shows how to turn the pages on.
    let b = browser(Options::default()).await;
    b.open("/admin/").await;
    b.wait_until("#off-panel", "to be shown", || b.displayed("#off-panel"))
        .await;
    let text = b.text("#off-panel").await;
    assert!(
        text.contains("--admin-token") && text.contains("UNLOCKD_ADMIN_TOKEN"),
        "{text}"
    );
    assert!(!b.displayed("#sign-in-panel").await);
    b.screenshot("operator-off").await;
    b.close().await;
}

#[tokio::test]
async fn phones_unlock_the_same_way_at_their_own_price() {
    let b = browser(with_worker()).await;
    let (_, key) = b.app.account(1000).await;
    b.sign_in(&key).await;
    b.select_example_people().await;
    b.click("input[name=kind][value=phone]").await;
    b.click("#precheck-btn").await;
    b.wait_text("#pc-cost", "to be 300 credits", |t| t == "300 credits")
        .await;
    assert_eq!(
        b.text("#unlock-btn").await,
        "Unlock 2 phones for 300 credits"
    );
    b.click("#unlock-btn").await;
    b.wait_text("#task-status", "to be completed", |t| t == "completed")
        .await;
    b.wait_text("#task-items", "to show both phones", |t| {
        t.contains("+1 415 555 789") && t.contains("+1 415 555 790")
    })
    .await;
    b.wait_text("#balance-available", "to fall by 300", |t| t == "700")
        .await;
    b.close().await;
}

#[tokio::test]
async fn a_429_says_when_to_retry_and_the_console_works_from_the_keyboard() {
    let b = browser(Options {
        worker: true,
        key_rate_limit: 3,
        ..Options::default()
    })
    .await;
    let (_, key) = b.app.account(1000).await;
    b.open("/").await;
    // Keyboard only: type the key and press Enter.
    b.type_into("#api-key", &format!("{key}\u{E007}")).await;
    b.wait_text("#balance-summary", "to show the balance", |t| {
        t.contains("available")
    })
    .await;
    // Sign-in used at most 3 requests of the key's 3 a minute (the balance, the event list
    // and, where the server lists tasks, the recent tasks); the focus moved to the event
    // search, where Enter searches with 2 more.
    let focused = b.script("return document.activeElement.id;").await;
    assert_eq!(focused, json!("event-search"));
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys("139574\u{E007}")
        .await
        .unwrap();
    let message = b
        .wait_text("#error-text", "to explain the 429", |t| !t.is_empty())
        .await;
    assert!(
        message.starts_with("Too many requests. Try again in ") && message.contains("second"),
        "{message}"
    );
    b.screenshot("customer-429").await;
    b.close().await;
}
