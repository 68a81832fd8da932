//! Async client for the unlockd HTTP API.
//!
//! The client speaks only the contact-unlock part of the contract that unlockd shares with
//! the Lensmor external API, so it works against either server. It does not depend on
//! unlockd extensions: the long poll (`?wait=`) is opt-in and degrades to plain polling
//! when a server ignores it.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

pub use unlockd_api::{
    ApiError, CallSource, ContactItem, ContactPage, CreditBalance, EventItem, EventPage,
    ExhibitorItem, ExhibitorPage, ItemStatus, PrecheckResponse, ReasonCode, SubmissionStatus,
    TaskStatus, UnlockRequest, UnlockSubmission, UnlockTask, UnlockTaskItem, UnlockTaskListEntry,
    UnlockTaskPage,
};

/// Most personnel ids the server accepts in one unlock request.
pub const MAX_IDS_PER_REQUEST: usize = 100;

/// Longest long poll the server accepts (`?wait=` above this is a 400).
pub const MAX_LONG_POLL: Duration = Duration::from_secs(30);

/// Poll delays recommended by the upstream docs; the last one repeats.
pub const DEFAULT_POLL_SCHEDULE: [Duration; 4] = [
    Duration::from_secs(3),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
];

/// Budget of a request that is not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time a long poll gets beyond the wait it asked for, so a slow network does not
/// turn a normal long-poll answer into a client-side timeout.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Cap on the raw body quoted in a synthesized error, so an HTML error page stays readable.
const MAX_RAW_ERROR_CHARS: usize = 1024;
/// `errorKey` of an error whose body was not the API's error envelope.
pub const SYNTHETIC_ERROR_KEY: &str = "HTTP_ERROR";

const CALL_SOURCE_HEADER: HeaderName = HeaderName::from_static("x-call-source");
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a call can fail with. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad base URL, API key or argument; nothing was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The server answered with a non-2xx status.
    #[error("HTTP {status} {}: {} (trace id {})", error.error_key, error.message, error.trace_id)]
    Api {
        status: u16,
        /// The server's error envelope, or one synthesized from the raw body.
        error: ApiError,
        /// `Retry-After`, when the server sent one (429).
        retry_after: Option<Duration>,
    },
    /// Connection, timeout or other network failure.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    /// A 2xx body that is not what the endpoint promises.
    #[error("cannot decode response: {0}")]
    Decode(String),
    /// [`Client::wait_for_task`] ran out of time before the task was terminal.
    #[error("task {task_id} was not finished after {waited:?}")]
    Timeout {
        task_id: String,
        waited: Duration,
        /// The last state seen, if any poll succeeded. Boxed to keep `Result`s small.
        last_task: Option<Box<UnlockTask>>,
    },
}

impl ClientError {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `errorKey` of an API error (`RATE_LIMIT_EXCEEDED`, `TASK_NOT_FOUND`, ...).
    pub fn error_key(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.error_key),
            _ => None,
        }
    }
}

/// How [`Client::wait_for_task`] polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOptions {
    /// Give up after this long with [`ClientError::Timeout`].
    pub timeout: Duration,
    /// Use the server long poll (`?wait=`), an unlockd extension. A server that ignores it
    /// is detected (it answers early) and then paced with `poll_schedule`.
    pub long_poll: bool,
    /// Delays between polls; the last one repeats. Empty means [`DEFAULT_POLL_SCHEDULE`].
    pub poll_schedule: Vec<Duration>,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(15 * 60),
            long_poll: false,
            poll_schedule: DEFAULT_POLL_SCHEDULE.to_vec(),
        }
    }
}

/// Connection settings beyond the base URL and the key.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM certificates (one or several per entry) trusted for `https://` in addition to
    /// the bundled public roots: for a private CA or a self-signed server.
    pub extra_root_certificates: Vec<Vec<u8>>,
}

/// Client of one server with one API key. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// `Bearer <key>`, marked sensitive so reqwest never prints it either.
    auth: HeaderValue,
    call_source: Option<CallSource>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base.as_str())
            .field("api_key", &"<redacted>")
            .field("call_source", &self.call_source)
            .finish()
    }
}

impl Client {
    /// `base_url` is the server root (`http://127.0.0.1:8080`) or a prefix under which
    /// `/external/...` lives.
    /// `https://` uses rustls with the Mozilla (webpki) root certificates.
    pub fn new(base_url: &str, api_key: &str) -> Result<Client, ClientError> {
        Client::with_options(base_url, api_key, &ClientOptions::default())
    }

    /// [`Client::new`] with [`ClientOptions`].
    pub fn with_options(
        base_url: &str,
        api_key: &str,
        options: &ClientOptions,
    ) -> Result<Client, ClientError> {
        let mut base = Url::parse(base_url.trim())
            .map_err(|e| ClientError::InvalidInput(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::InvalidInput(format!(
                "base URL {base_url:?} must be an http or https URL"
            )));
        }
        // Endpoint paths are appended to the base path; a query or fragment would be noise.
        base.set_query(None);
        base.set_fragment(None);

        let key = api_key.trim();
        if key.is_empty() {
            return Err(ClientError::InvalidInput("the API key is empty".into()));
        }
        // Do not quote the key in the error: it is a secret even when malformed.
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
            ClientError::InvalidInput(
                "the API key contains characters not allowed in an HTTP header".into(),
            )
        })?;
        auth.set_sensitive(true);

        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("unlockd-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .use_rustls_tls();
        for pem in &options.extra_root_certificates {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::InvalidInput(format!("extra root certificate: {e}")))?;
            if certificates.is_empty() {
                return Err(ClientError::InvalidInput(
                    "extra root certificate: no PEM certificate found".into(),
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build()?;
        Ok(Client {
            http,
            base,
            auth,
            call_source: None,
        })
    }

    /// Send `x-call-source` on every request (recorded on tasks and ledger entries).
    pub fn with_call_source(mut self, source: CallSource) -> Client {
        self.call_source = Some(source);
        self
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    pub fn call_source(&self) -> Option<CallSource> {
        self.call_source
    }

    /// `POST /external/contacts/unlock`: start an email unlock task. At most
    /// [`MAX_IDS_PER_REQUEST`] ids; split larger lists with [`chunk_ids`].
    pub async fn create_unlock(
        &self,
        event_id: &str,
        personnel_ids: &[String],
    ) -> Result<UnlockSubmission, ClientError> {
        self.create(&["external", "contacts", "unlock"], event_id, personnel_ids)
            .await
    }

    /// `POST /external/contacts/unlock-phone`: start a phone unlock task.
    pub async fn create_phone_unlock(
        &self,
        event_id: &str,
        personnel_ids: &[String],
    ) -> Result<UnlockSubmission, ClientError> {
        self.create(
            &["external", "contacts", "unlock-phone"],
            event_id,
            personnel_ids,
        )
        .await
    }

    /// `GET /external/contacts/unlock-tasks/{taskId}`. With `wait`, the server holds the
    /// request until the task is terminal or the wait (whole seconds, at most 30) ends.
    pub async fn get_task(
        &self,
        task_id: &str,
        wait: Option<Duration>,
    ) -> Result<UnlockTask, ClientError> {
        self.fetch_task(task_id, false, wait).await
    }

    /// `GET /external/contacts/unlock-phone-tasks/{taskId}`; see [`Client::get_task`].
    pub async fn get_phone_task(
        &self,
        task_id: &str,
        wait: Option<Duration>,
    ) -> Result<UnlockTask, ClientError> {
        self.fetch_task(task_id, true, wait).await
    }

    /// `GET /external/credits/balance`.
    pub async fn balance(&self) -> Result<CreditBalance, ClientError> {
        let url = self.endpoint(&["external", "credits", "balance"])?;
        self.send(
            self.request(Method::GET, url, REQUEST_TIMEOUT),
            "credit balance",
        )
        .await
    }

    /// `POST /external/actions/precheck` for an unlock: what a create would do and cost.
    pub async fn precheck_unlock(
        &self,
        phone: bool,
        event_id: &str,
        personnel_ids: &[String],
    ) -> Result<PrecheckResponse, ClientError> {
        let url = self.endpoint(&["external", "actions", "precheck"])?;
        let action_type = if phone {
            "unlock_contact_phones"
        } else {
            "unlock_contact_emails"
        };
        let body = serde_json::json!({
            "action_type": action_type,
            "params": {"event_id": event_id, "personnel_ids": personnel_ids},
        });
        self.send(
            self.request(Method::POST, url, REQUEST_TIMEOUT).json(&body),
            "precheck",
        )
        .await
    }

    /// `GET /external/events/list` with the given query parameters (`keyword`, `country`,
    /// `city`, `date_start_from`, `date_start_to`, `page`, `pageSize`).
    pub async fn list_events(&self, query: &[(&str, String)]) -> Result<EventPage, ClientError> {
        let mut url = self.endpoint(&["external", "events", "list"])?;
        url.query_pairs_mut().extend_pairs(query);
        self.send(
            self.request(Method::GET, url, REQUEST_TIMEOUT),
            "event page",
        )
        .await
    }

    /// *unlockd extension*: `GET /external/contacts/unlock-tasks` (or the phone twin) with
    /// the given query parameters (`status`, `created_after`, `created_before`,
    /// `call_source`, `page`, `pageSize`): the account's tasks, newest first.
    pub async fn list_tasks(
        &self,
        phone: bool,
        query: &[(&str, String)],
    ) -> Result<UnlockTaskPage, ClientError> {
        let route = if phone {
            "unlock-phone-tasks"
        } else {
            "unlock-tasks"
        };
        let mut url = self.endpoint(&["external", "contacts", route])?;
        url.query_pairs_mut().extend_pairs(query);
        self.send(self.request(Method::GET, url, REQUEST_TIMEOUT), "task page")
            .await
    }

    /// `GET /external/personnel/list?event_id=...` with further query parameters
    /// (`department`, `level`, `search_query`, `exhibitor_id`, `page`, `pageSize`).
    pub async fn list_personnel(
        &self,
        event_id: &str,
        query: &[(&str, String)],
    ) -> Result<ContactPage, ClientError> {
        let mut url = self.endpoint(&["external", "personnel", "list"])?;
        url.query_pairs_mut()
            .append_pair("event_id", event_id)
            .extend_pairs(query);
        self.send(
            self.request(Method::GET, url, REQUEST_TIMEOUT),
            "personnel page",
        )
        .await
    }

    /// `GET /external/exhibitors/list?event_id=...` with further query parameters
    /// (`keyword`, `country`, `department`, `managementLevel`, `jobTitle` (each repeatable),
    /// `personnelLimit`, `page`, `pageSize`).
    pub async fn list_exhibitors(
        &self,
        event_id: &str,
        query: &[(&str, String)],
    ) -> Result<ExhibitorPage, ClientError> {
        let mut url = self.endpoint(&["external", "exhibitors", "list"])?;
        url.query_pairs_mut()
            .append_pair("event_id", event_id)
            .extend_pairs(query);
        self.send(
            self.request(Method::GET, url, REQUEST_TIMEOUT),
            "exhibitor page",
        )
        .await
    }

    /// `GET /external/personnel/profile?personnel_id=...`: one person, with the contacts
    /// this account has unlocked.
    pub async fn personnel_profile(&self, personnel_id: &str) -> Result<ContactItem, ClientError> {
        let mut url = self.endpoint(&["external", "personnel", "profile"])?;
        url.query_pairs_mut()
            .append_pair("personnel_id", personnel_id);
        self.send(
            self.request(Method::GET, url, REQUEST_TIMEOUT),
            "personnel profile",
        )
        .await
    }

    /// Poll a task until it is `completed` or `failed`. See [`WaitOptions`]. A 429 is
    /// retried after at least its `Retry-After`; any other error is returned at once.
    pub async fn wait_for_task(
        &self,
        task_id: &str,
        phone: bool,
        options: WaitOptions,
    ) -> Result<UnlockTask, ClientError> {
        self.wait_for_task_with_progress(task_id, phone, options, |_| {})
            .await
    }

    /// [`Client::wait_for_task`], calling `on_poll` with every state fetched (for progress
    /// display), the terminal one included.
    pub async fn wait_for_task_with_progress<F>(
        &self,
        task_id: &str,
        phone: bool,
        options: WaitOptions,
        mut on_poll: F,
    ) -> Result<UnlockTask, ClientError>
    where
        F: FnMut(&UnlockTask),
    {
        let schedule: &[Duration] = if options.poll_schedule.is_empty() {
            &DEFAULT_POLL_SCHEDULE
        } else {
            &options.poll_schedule
        };
        let started = Instant::now();
        // `None` when the timeout is too large to represent: wait forever.
        let deadline = started.checked_add(options.timeout);
        let remaining = || {
            deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            })
        };
        let mut step = 0usize;
        let mut last: Option<UnlockTask> = None;
        let timeout = |last: Option<UnlockTask>| ClientError::Timeout {
            task_id: task_id.to_string(),
            waited: started.elapsed(),
            last_task: last.map(Box::new),
        };

        loop {
            // Whole seconds only; under one second left, a long poll is pointless.
            let wait = if options.long_poll {
                Some(Duration::from_secs(
                    remaining().min(MAX_LONG_POLL).as_secs(),
                ))
                .filter(|w| !w.is_zero())
            } else {
                None
            };
            let sent = Instant::now();
            let delay = match self.fetch_task(task_id, phone, wait).await {
                Ok(task) => {
                    on_poll(&task);
                    if task.task_status.is_terminal() {
                        return Ok(task);
                    }
                    last = Some(task);
                    match wait {
                        // The server held the request as asked: the wait was the pause.
                        Some(w) if sent.elapsed() >= w / 2 => Duration::ZERO,
                        // Plain polling, or a server that ignores `wait`: back off.
                        _ => next_delay(schedule, &mut step),
                    }
                }
                Err(ClientError::Api {
                    status: 429,
                    retry_after,
                    ..
                }) => {
                    // Keep backing off while rate limited, never sooner than asked.
                    let delay =
                        next_delay(schedule, &mut step).max(retry_after.unwrap_or_default());
                    // Retrying before Retry-After would only earn another 429.
                    if delay >= remaining() {
                        return Err(timeout(last));
                    }
                    delay
                }
                Err(e) => return Err(e),
            };
            let left = remaining();
            if left.is_zero() {
                return Err(timeout(last));
            }
            // Cut the last pause short so the final poll happens at the deadline.
            tokio::time::sleep(delay.min(left)).await;
        }
    }

    async fn create(
        &self,
        path: &[&str],
        event_id: &str,
        personnel_ids: &[String],
    ) -> Result<UnlockSubmission, ClientError> {
        let url = self.endpoint(path)?;
        let body = UnlockRequest {
            event_id: event_id.to_string(),
            personnel_ids: personnel_ids.to_vec(),
        };
        self.send(
            self.request(Method::POST, url, REQUEST_TIMEOUT).json(&body),
            "unlock submission",
        )
        .await
    }

    async fn fetch_task(
        &self,
        task_id: &str,
        phone: bool,
        wait: Option<Duration>,
    ) -> Result<UnlockTask, ClientError> {
        // URL normalisation would drop or resolve these segments, hitting another route.
        if task_id.is_empty() || task_id == "." || task_id == ".." {
            return Err(ClientError::InvalidInput(format!(
                "invalid task id {task_id:?}"
            )));
        }
        let collection = if phone {
            "unlock-phone-tasks"
        } else {
            "unlock-tasks"
        };
        // `extend` percent-encodes the id, `/` included.
        let mut url = self.endpoint(&["external", "contacts", collection, task_id])?;
        let mut budget = REQUEST_TIMEOUT;
        if let Some(wait) = wait {
            let seconds = wait.min(MAX_LONG_POLL).as_secs();
            if seconds > 0 {
                url.query_pairs_mut()
                    .append_pair("wait", &seconds.to_string());
                budget = Duration::from_secs(seconds) + LONG_POLL_MARGIN;
            }
        }
        self.send(self.request(Method::GET, url, budget), "unlock task")
            .await
    }

    fn endpoint(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ClientError::InvalidInput("base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, url: Url, timeout: Duration) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json");
        if let Some(source) = self.call_source {
            request = request.header(CALL_SOURCE_HEADER, source.as_str());
        }
        request
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        what: &str,
    ) -> Result<T, ClientError> {
        let response = request.send().await?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let request_id = header_str(response.headers(), &REQUEST_ID_HEADER).map(str::to_owned);
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(ClientError::Api {
                status: status.as_u16(),
                error: parse_error_body(status, request_id.as_deref(), &body),
                retry_after,
            });
        }
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::Decode(format!(
                "{what} (HTTP {}): {e}; body starts with {:?}",
                status.as_u16(),
                truncate(&String::from_utf8_lossy(&body), 200)
            ))
        })
    }
}

/// Deduplicate ids (first occurrence wins, as the server does) and split them into
/// request-sized chunks of at most [`MAX_IDS_PER_REQUEST`].
pub fn chunk_ids(ids: &[String]) -> Vec<Vec<String>> {
    let mut seen = HashSet::with_capacity(ids.len());
    let unique: Vec<String> = ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect();
    unique
        .chunks(MAX_IDS_PER_REQUEST)
        .map(<[String]>::to_vec)
        .collect()
}

/// Turn an error response body into an [`ApiError`]. The envelope is used as is; a JSON
/// object with at least a `message` (another server's envelope) is adapted; anything else
/// becomes an envelope with the status and the raw text.
pub fn parse_error_body(status: StatusCode, request_id: Option<&str>, body: &[u8]) -> ApiError {
    if let Ok(error) = serde_json::from_slice::<ApiError>(body) {
        return error;
    }
    let trace_id = request_id.unwrap_or_default().to_string();
    if let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(body) {
        if let Some(serde_json::Value::String(message)) = object.remove("message") {
            let take_str = |object: &mut serde_json::Map<_, _>, key: &str| match object.remove(key)
            {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            };
            let code = object
                .remove("code")
                .and_then(|c| c.as_u64())
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(status.as_u16());
            let error_key = take_str(&mut object, "errorKey")
                .unwrap_or_else(|| SYNTHETIC_ERROR_KEY.to_string());
            let trace_id = take_str(&mut object, "traceId").unwrap_or(trace_id);
            return ApiError {
                code,
                message,
                error_key,
                trace_id,
                extra: object,
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        truncate(text, MAX_RAW_ERROR_CHARS)
    };
    ApiError {
        code: status.as_u16(),
        message,
        error_key: SYNTHETIC_ERROR_KEY.to_string(),
        trace_id,
        extra: serde_json::Map::new(),
    }
}

/// `Retry-After` in seconds (the spec's form). HTTP dates are not used by unlockd and are
/// ignored, which makes the caller fall back to its own backoff.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_str(headers, &RETRY_AFTER)?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn next_delay(schedule: &[Duration], step: &mut usize) -> Duration {
    let delay = schedule
        .get(*step)
        .or(schedule.last())
        .copied()
        .unwrap_or(DEFAULT_POLL_SCHEDULE[0]);
    *step = step.saturating_add(1);
    delay
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chunk_ids_dedups_first_occurrence_wins() {
        let chunks = chunk_ids(&ids(&["b", "a", "b", "c", "a"]));
        assert_eq!(chunks, vec![ids(&["b", "a", "c"])]);
    }

    #[test]
    fn chunk_ids_splits_at_100() {
        let input: Vec<String> = (0..250).map(|i| format!("p{i}")).collect();
        let chunks = chunk_ids(&input);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(chunks.concat(), input);
    }

    #[test]
    fn chunk_ids_counts_unique_ids_only() {
        // 100 unique ids with duplicates interleaved fit in one request.
        let mut input: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        input.extend((0..100).map(|i| format!("p{i}")));
        let chunks = chunk_ids(&input);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].len(), 100);
    }

    #[test]
    fn chunk_ids_empty() {
        assert!(chunk_ids(&[]).is_empty());
    }

    #[test]
    fn error_envelope_is_parsed_with_extras() {
        let body = br#"{"code":409,"message":"already unlocking","errorKey":"UNLOCK_IN_PROGRESS","traceId":"t-1","taskIds":["a","b"]}"#;
        let error = parse_error_body(StatusCode::CONFLICT, Some("other"), body);
        assert_eq!(error.code, 409);
        assert_eq!(error.error_key, "UNLOCK_IN_PROGRESS");
        assert_eq!(error.message, "already unlocking");
        assert_eq!(error.trace_id, "t-1");
        assert_eq!(error.extra["taskIds"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn partial_envelope_is_adapted() {
        let body = br#"{"message":"slow down","retryIn":3}"#;
        let error = parse_error_body(StatusCode::TOO_MANY_REQUESTS, Some("req-9"), body);
        assert_eq!(error.code, 429);
        assert_eq!(error.message, "slow down");
        assert_eq!(error.error_key, SYNTHETIC_ERROR_KEY);
        assert_eq!(error.trace_id, "req-9");
        assert_eq!(error.extra["retryIn"], 3);
    }

    #[test]
    fn non_envelope_body_is_synthesized() {
        let error = parse_error_body(
            StatusCode::BAD_GATEWAY,
            None,
            b"  <html>bad gateway</html>\n",
        );
        assert_eq!(error.code, 502);
        assert_eq!(error.message, "<html>bad gateway</html>");
        assert_eq!(error.error_key, SYNTHETIC_ERROR_KEY);
        assert_eq!(error.trace_id, "");
        assert!(error.extra.is_empty());

        let empty = parse_error_body(StatusCode::SERVICE_UNAVAILABLE, Some("r"), b"");
        assert_eq!(empty.message, "HTTP 503 Service Unavailable");
        assert_eq!(empty.trace_id, "r");

        let json_but_not_object = parse_error_body(StatusCode::INTERNAL_SERVER_ERROR, None, b"[1]");
        assert_eq!(json_but_not_object.message, "[1]");
    }

    #[test]
    fn long_raw_error_is_truncated() {
        let body = "é".repeat(5000);
        let error = parse_error_body(StatusCode::BAD_GATEWAY, None, body.as_bytes());
        assert_eq!(error.message.chars().count(), MAX_RAW_ERROR_CHARS + 1);
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::from_millis(1500))
        );
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(parse_retry_after(&headers), None);
    }

    #[test]
    fn backoff_schedule_repeats_last_step() {
        let schedule = [Duration::from_secs(1), Duration::from_secs(2)];
        let mut step = 0;
        let delays: Vec<_> = (0..4).map(|_| next_delay(&schedule, &mut step)).collect();
        assert_eq!(delays, [1, 2, 2, 2].map(Duration::from_secs));
    }

    #[test]
    fn new_validates_and_redacts_the_key() {
        let key = "sk_0123456789abcdef_secretsecret";
        let client = Client::new("http://127.0.0.1:8080/", key).unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("<redacted>"));

        assert!(matches!(
            Client::new("ftp://x", key),
            Err(ClientError::InvalidInput(_))
        ));
        assert!(matches!(
            Client::new("not a url", key),
            Err(ClientError::InvalidInput(_))
        ));
        assert!(matches!(
            Client::new("http://x", "  "),
            Err(ClientError::InvalidInput(_))
        ));
        let bad = Client::new("http://x", "sk_secret\nvalue").unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
    }

    #[test]
    fn endpoints_keep_the_base_prefix_and_encode_ids() {
        let client = Client::new("http://h:1/prefix/?q=1#f", "k").unwrap();
        let url = client
            .endpoint(&["external", "contacts", "unlock-tasks", "a/b c?#%"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:1/prefix/external/contacts/unlock-tasks/a%2Fb%20c%3F%23%25"
        );
        let root = Client::new("http://h:1", "k").unwrap();
        assert_eq!(
            root.endpoint(&["external", "credits", "balance"])
                .unwrap()
                .as_str(),
            "http://h:1/external/credits/balance"
        );
    }

    /// A scripted server: the create call, then one 429 with `Retry-After: 1`, then a
    /// processing task, then the completed task.
    mod live {
        use super::super::*;
        use axum::extract::{Path, RawQuery, State};
        use axum::http::HeaderMap as AxumHeaders;
        use axum::response::{IntoResponse, Response};
        use axum::routing::{get, post};
        use axum::{Json, Router};
        use std::sync::{Arc, Mutex};
        use std::time::Instant as StdInstant;

        const KEY: &str = "sk_00112233445566aa_feedfacefeedface";
        const TASK_ID: &str = "task 1/x";

        #[derive(Debug, Clone)]
        struct Seen {
            path: String,
            query: Option<String>,
            authorization: Option<String>,
            call_source: Option<String>,
            at: StdInstant,
        }

        #[derive(Clone, Default)]
        struct Script {
            seen: Arc<Mutex<Vec<Seen>>>,
            /// Respond "processing" forever instead of following the script.
            never_finish: bool,
        }

        impl Script {
            fn record(&self, path: String, query: Option<String>, headers: &AxumHeaders) -> usize {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let mut seen = self.seen.lock().unwrap();
                seen.push(Seen {
                    path,
                    query,
                    authorization: header("authorization"),
                    call_source: header("x-call-source"),
                    at: StdInstant::now(),
                });
                seen.len()
            }

            fn seen(&self) -> Vec<Seen> {
                self.seen.lock().unwrap().clone()
            }
        }

        fn task_json(status: &str) -> serde_json::Value {
            let item = if status == "completed" {
                serde_json::json!({"personnelId": "p1", "status": "unlocked", "email": "a@b.c"})
            } else {
                serde_json::json!({"personnelId": "p1", "status": "processing"})
            };
            serde_json::json!({"taskId": TASK_ID, "taskStatus": status, "items": [item]})
        }

        async fn create(
            State(script): State<Script>,
            headers: AxumHeaders,
            Json(body): Json<UnlockRequest>,
        ) -> Response {
            script.record("create".into(), None, &headers);
            assert_eq!(body.event_id, "ev1");
            (
                axum::http::StatusCode::CREATED,
                Json(serde_json::json!({"status": "accepted", "task_id": TASK_ID, "job_id": TASK_ID})),
            )
                .into_response()
        }

        async fn task(
            State(script): State<Script>,
            Path(task_id): Path<String>,
            RawQuery(query): RawQuery,
            headers: AxumHeaders,
        ) -> Response {
            let n = script.record(task_id, query, &headers);
            if script.never_finish {
                return Json(task_json("processing")).into_response();
            }
            // Request 1 was the create call.
            match n {
                2 => (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1"), ("x-request-id", "rl-1")],
                    Json(serde_json::json!({
                        "code": 429, "message": "Too many requests",
                        "errorKey": "RATE_LIMIT_EXCEEDED", "traceId": "rl-1"
                    })),
                )
                    .into_response(),
                3 => Json(task_json("processing")).into_response(),
                _ => Json(task_json("completed")).into_response(),
            }
        }

        async fn serve(script: Script) -> String {
            let app = Router::new()
                .route("/external/contacts/unlock", post(create))
                .route("/external/contacts/unlock-tasks/{task_id}", get(task))
                .with_state(script);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}")
        }

        fn fast(long_poll: bool, timeout: Duration) -> WaitOptions {
            WaitOptions {
                timeout,
                long_poll,
                poll_schedule: vec![Duration::from_millis(50)],
            }
        }

        #[tokio::test]
        async fn wait_for_task_honours_retry_after_and_sends_headers() {
            let script = Script::default();
            let base = serve(script.clone()).await;
            let client = Client::new(&base, KEY)
                .unwrap()
                .with_call_source(CallSource::Agent);

            let run = async {
                let submission = client
                    .create_unlock("ev1", &["p1".to_string()])
                    .await
                    .unwrap();
                let task_id = submission.task_id.unwrap();
                let mut polls = Vec::new();
                let task = client
                    .wait_for_task_with_progress(
                        &task_id,
                        false,
                        fast(false, Duration::from_secs(10)),
                        |t| polls.push(t.task_status),
                    )
                    .await
                    .unwrap();
                (task, polls)
            };
            let (task, polls) = tokio::time::timeout(Duration::from_secs(8), run)
                .await
                .expect("test server scenario took too long");

            assert_eq!(task.task_id, TASK_ID);
            assert_eq!(task.task_status, TaskStatus::Completed);
            assert_eq!(task.items[0].email.as_deref(), Some("a@b.c"));
            assert_eq!(polls, [TaskStatus::Processing, TaskStatus::Completed]);

            let seen = script.seen();
            assert_eq!(seen.len(), 4, "{seen:?}");
            for request in &seen {
                assert_eq!(
                    request.authorization.as_deref(),
                    Some(format!("Bearer {KEY}").as_str())
                );
                assert_eq!(request.call_source.as_deref(), Some("agent"));
            }
            // The id survived percent-encoding; no long poll was asked for.
            assert!(seen[1..]
                .iter()
                .all(|s| s.path == TASK_ID && s.query.is_none()));
            let pause = seen[2].at.duration_since(seen[1].at);
            assert!(pause >= Duration::from_secs(1), "retried after {pause:?}");
        }

        #[tokio::test]
        async fn rate_limit_error_carries_envelope_and_retry_after() {
            let script = Script::default();
            let base = serve(script.clone()).await;
            let client = Client::new(&base, KEY).unwrap();
            client.create_unlock("ev1", &["p1".into()]).await.unwrap();
            let error = client.get_task(TASK_ID, None).await.unwrap_err();
            match &error {
                ClientError::Api {
                    status,
                    error,
                    retry_after,
                } => {
                    assert_eq!(*status, 429);
                    assert_eq!(error.error_key, "RATE_LIMIT_EXCEEDED");
                    assert_eq!(error.trace_id, "rl-1");
                    assert_eq!(*retry_after, Some(Duration::from_secs(1)));
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(!error.to_string().contains(KEY));
            // No x-call-source unless asked for.
            assert!(script.seen().iter().all(|s| s.call_source.is_none()));
        }

        #[tokio::test]
        async fn long_poll_sends_wait_and_times_out_with_last_task() {
            let script = Script {
                never_finish: true,
                ..Script::default()
            };
            let base = serve(script.clone()).await;
            let client = Client::new(&base, KEY).unwrap();
            // This server ignores `wait`, so the client must fall back to the schedule
            // instead of spinning, and give up at the deadline.
            let started = StdInstant::now();
            let error = tokio::time::timeout(
                Duration::from_secs(5),
                client.wait_for_task(TASK_ID, false, fast(true, Duration::from_millis(1500))),
            )
            .await
            .expect("wait_for_task ignored its timeout")
            .unwrap_err();
            let elapsed = started.elapsed();
            match error {
                ClientError::Timeout {
                    task_id, last_task, ..
                } => {
                    assert_eq!(task_id, TASK_ID);
                    let last = last_task.expect("a poll succeeded");
                    assert_eq!(last.task_status, TaskStatus::Processing);
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
            let seen = script.seen();
            assert_eq!(seen[0].query.as_deref(), Some("wait=1"));
            // 50 ms pacing over 1.5 s is ~30 polls; a spinning client would make thousands.
            assert!(seen.len() < 60, "{} polls", seen.len());
        }

        #[tokio::test]
        async fn unreachable_server_is_a_transport_error() {
            // Bind then drop a listener to get a port nobody listens on.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let client = Client::new(&format!("http://{addr}"), KEY).unwrap();
            let error = client.balance().await.unwrap_err();
            assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
            assert!(!format!("{error:?} {error}").contains(KEY));
        }
    }
}
