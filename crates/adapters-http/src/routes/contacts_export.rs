//! `GET /api/v1/contacts/export`: the filtered contact list as CSV, streamed page by page
//! (keyset, `EXPORT_PAGE` rows per query, all from one snapshot of the database) so that
//! memory stays flat whatever the size and no contact edited meanwhile is lost or doubled.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, web};
use nexus_application::ContactUseCases;
use nexus_application::csv::needs_formula_guard;
use nexus_domain::contact::Contact;
use nexus_domain::values::PhoneNumber;
use nexus_ports::contacts::{ContactSnapshot, SNAPSHOT_IDLE};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::auth::Auth;
use crate::problem::ApiError;
use crate::responses::{BadRequest, Forbidden, ServiceUnavailable, Unauthorized};
use crate::routes::contacts::{ContactFilterParams, PAGING, parse_list_request};

/// Rows fetched per query while streaming.
pub const EXPORT_PAGE: u32 = 200;

/// The right to stream exports on one HTTP worker, one at a time: an export holds one of
/// the worker's few database connections for as long as its client reads, which a slow
/// or stalled client makes long, and two at once could leave the worker's other contact
/// requests without one.
pub struct ExportSlots {
    slots: Arc<Semaphore>,
    /// How long a stream may go unread before its export is given up (its snapshot and
    /// slot released).
    idle: Duration,
}

impl ExportSlots {
    #[must_use]
    pub fn per_worker() -> Self {
        Self::with_idle(SNAPSHOT_IDLE)
    }

    fn with_idle(idle: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(1)),
            idle,
        }
    }

    /// A free slot, held until the export's stream ends or is dropped.
    ///
    /// # Errors
    /// 503 `exports_busy` with `Retry-After` when this worker is streaming an export.
    fn take(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "exports_busy",
                "The server is streaming as many exports as it takes at once; retry shortly.",
            )
            .with_retry_after(5)
        })
    }
}

const FIXED_COLUMNS: [&str; 13] = [
    "id",
    "firstName",
    "lastName",
    "email",
    "phone",
    "phoneE164",
    "company",
    "lifecycleStage",
    "leadScore",
    "ownerId",
    "tags",
    "createdAt",
    "updatedAt",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break, and
/// with a leading `'` when a spreadsheet would run it as a formula.
fn field(out: &mut String, raw: &str) {
    let guarded = needs_formula_guard(raw);
    let needs_quotes = guarded || raw.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    for c in raw.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if needs_quotes {
        out.push('"');
    }
}

fn line(out: &mut String, cells: &[String]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, cell);
    }
    out.push_str("\r\n");
}

/// Tags joined with `;`. An import splits a cell without `;` on commas, so a lone tag
/// holding a comma gets a trailing `;` to come back whole.
fn tags_cell(tags: &[String]) -> String {
    let mut cell = tags.join(";");
    if let [only] = tags
        && only.contains(',')
    {
        cell.push(';');
    }
    cell
}

fn custom_cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    }
}

fn row(c: &Contact, keys: &[String]) -> Vec<String> {
    let f = &c.fields;
    let mut cells = vec![
        c.id.to_string(),
        f.first_name.as_str().to_owned(),
        f.last_name.as_str().to_owned(),
        f.email
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_default(),
        f.phone
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        f.phone
            .as_ref()
            .and_then(PhoneNumber::e164)
            .unwrap_or_default()
            .to_owned(),
        f.company
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        f.lifecycle_stage.as_str().to_owned(),
        c.lead_score.value().to_string(),
        f.owner_id.map(|u| u.to_string()).unwrap_or_default(),
        tags_cell(&f.tags.to_strings()),
        c.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        c.updated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ];
    cells.extend(keys.iter().map(|k| custom_cell(f.custom_fields.get(k))));
    cells
}

/// What a streaming export holds until its stream ends or its watch gives it up.
struct Held {
    pages: Box<dyn ContactSnapshot>,
    /// When the response last asked for a chunk.
    asked: Instant,
    _slot: OwnedSemaphorePermit,
}

type Shared = Arc<tokio::sync::Mutex<Option<Held>>>;

struct Export {
    held: Shared,
    keys: Vec<String>,
    /// The header line and the first page, read before the response began.
    first: Option<(String, Vec<Contact>)>,
    done: bool,
}

impl Export {
    /// The stream of `pages`, whose `first` page was read before the response began.
    fn start(
        pages: Box<dyn ContactSnapshot>,
        first: Vec<Contact>,
        slot: OwnedSemaphorePermit,
        idle: Duration,
    ) -> Self {
        let keys = pages.custom_field_keys().to_vec();
        let mut header = String::new();
        let mut names: Vec<String> = FIXED_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        names.extend(keys.iter().map(|k| format!("customFields.{k}")));
        line(&mut header, &names);
        let held = Arc::new(tokio::sync::Mutex::new(Some(Held {
            pages,
            asked: Instant::now(),
            _slot: slot,
        })));
        tokio::spawn(watch(Arc::downgrade(&held), idle));
        Self {
            held,
            keys,
            first: Some((header, first)),
            done: false,
        }
    }
}

/// actix stops asking a streamed body for chunks while its client does not read, and
/// no timeout of its own ends such a response: this watch drops an export's snapshot
/// (its connection) and slot once its stream has gone `idle` without being asked for a
/// chunk, and the stream's next chunk, if ever asked for, cuts the download. It ends
/// with the stream.
async fn watch(held: std::sync::Weak<tokio::sync::Mutex<Option<Held>>>, idle: Duration) {
    let mut deadline = Instant::now() + idle;
    loop {
        tokio::time::sleep_until(deadline).await;
        let Some(held) = held.upgrade() else {
            return;
        };
        // Locked: a page is being read, so the client is reading.
        let Ok(mut held) = held.try_lock() else {
            deadline = Instant::now() + idle;
            continue;
        };
        match held.as_ref() {
            None => return,
            Some(h) if h.asked.elapsed() >= idle => {
                tracing::warn!(
                    idle_secs = idle.as_secs(),
                    "contact export unread; given up"
                );
                *held = None;
                return;
            }
            Some(h) => deadline = h.asked + idle,
        }
    }
}

fn lines(page: &[Contact], keys: &[String], out: &mut String) {
    out.reserve(page.len() * 160);
    for c in page {
        line(out, &row(c, keys));
    }
}

async fn next_chunk(mut state: Export) -> Option<(Result<Bytes, actix_web::Error>, Export)> {
    if state.done {
        return None;
    }
    let held = state.held.clone();
    let mut held = held.lock().await;
    let Some(h) = held.as_mut() else {
        // Given up by the watch: the client was not reading. Cut, not ended cleanly, so
        // the file cannot pass for whole.
        state.done = true;
        let error = std::io::Error::new(std::io::ErrorKind::TimedOut, "export unread");
        return Some((Err(actix_web::error::ErrorRequestTimeout(error)), state));
    };
    h.asked = Instant::now();
    if let Some((mut out, page)) = state.first.take() {
        lines(&page, &state.keys, &mut out);
        return Some((Ok(Bytes::from(out)), state));
    }
    match h.pages.next_page().await {
        // The stream's end drops its state, and with it the snapshot and the slot.
        Ok(page) if page.is_empty() => None,
        Ok(page) => {
            // The read's own time is not the client's: its idle time starts now.
            h.asked = Instant::now();
            let mut out = String::new();
            lines(&page, &state.keys, &mut out);
            Some((Ok(Bytes::from(out)), state))
        }
        Err(e) => {
            // Headers are gone: all that is left is to cut the stream, which clients see
            // as an incomplete download rather than a truncated file that looks whole.
            tracing::error!(error = %e, "contact export failed mid-stream");
            *held = None;
            state.done = true;
            Some((Err(ApiError::from_store(&e).into()), state))
        }
    }
}

/// An export refuses a list's paging parameters rather than ignoring them: it streams
/// every matching contact, so a client sending them expects what it would not get.
fn refuse_paging(query: &str) -> Result<(), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    match pairs
        .iter()
        .find(|(name, _)| PAGING.contains(&name.as_str()))
    {
        Some((name, _)) => Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("An export takes no `{name}`: it streams every matching contact."),
        )),
        None => Ok(()),
    }
}

/// Export the contacts matching the list filters as CSV (UTF-8, CRLF, RFC 4180), streamed.
///
/// Every row comes from one snapshot of the database, taken when the export begins: a
/// contact edited while the file streams is neither missing nor repeated.
///
/// Takes the filters and `sort` of `listContacts` (`q`, `tag`, `tagMode`, `lifecycleStage`,
/// `ownerId`, `createdAfter`, `createdBefore`, `customFields[<key>]`); `limit`, `cursor` and
/// `includeTotal` are refused (400). Columns: the contact fields, then one `customFields.<key>`
/// per custom field definition. Tags and multiselect values are joined with `;`.
#[utoipa::path(
    operation_id = "exportContacts",
    tag = "contacts",
    params(ContactFilterParams),
    responses(
        (status = 200, description = "CSV of every matching contact.", body = String, content_type = "text/csv",
         headers(("Content-Disposition" = String, description = "`attachment; filename=\"contacts.csv\"`: browsers save the file."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/export")]
pub async fn export_contacts(
    req: HttpRequest,
    auth: Auth,
    contacts: web::Data<dyn ContactUseCases>,
    slots: web::Data<ExportSlots>,
) -> Result<HttpResponse, ApiError> {
    refuse_paging(req.query_string())?;
    let (mut request, _) = parse_list_request(req.query_string())?;
    request.limit = EXPORT_PAGE;
    request.include_total = false;
    let slot = slots.take()?;
    // Checks the role and the filters, and reads the first page, before the first byte
    // is sent: a failure there is a status code (503 with `Retry-After`), not a cut
    // download.
    let mut pages = contacts
        .export(auth.0, request)
        .await
        .map_err(crate::routes::contacts::list_error)?;
    let first = pages
        .next_page()
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    let state = Export::start(pages, first, slot, slots.idle);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename("contacts.csv".into())],
        })
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(futures_util::stream::unfold(state, next_chunk)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages that are never read past the first chunk; says when it is dropped.
    struct Unread(Arc<std::sync::atomic::AtomicBool>);

    impl ContactSnapshot for Unread {
        fn custom_field_keys(&self) -> &[String] {
            &[]
        }

        fn next_page(
            &mut self,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<Vec<Contact>, nexus_ports::StoreError>> + Send + '_>,
        > {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    impl Drop for Unread {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// An export of [`Unread`] pages holding one of `slots`, as the stream actix reads,
    /// and the flag its pages set when dropped.
    fn unread_export(
        slots: &ExportSlots,
    ) -> (
        Arc<std::sync::atomic::AtomicBool>,
        std::pin::Pin<Box<impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>>>>,
    ) {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let export = Export::start(
            Box::new(Unread(dropped.clone())),
            Vec::new(),
            slots.take().unwrap(),
            slots.idle,
        );
        (
            dropped,
            Box::pin(futures_util::stream::unfold(export, next_chunk)),
        )
    }

    // Paused time: the runtime moves the clock on when every task waits, so the watch
    // acts after the idle time exactly, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn an_export_left_unread_lets_its_snapshot_and_slot_go_and_is_cut() {
        use futures_util::StreamExt;
        let slots = ExportSlots::with_idle(Duration::from_millis(200));
        let (dropped, mut stream) = unread_export(&slots);
        let header = stream.next().await.unwrap().unwrap();
        assert!(header.starts_with(b"id,firstName,"));
        tokio::time::sleep(Duration::from_millis(190)).await;
        assert!(
            slots.take().is_err(),
            "held while its client may still read"
        );
        assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));

        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "the snapshot is let go"
        );
        assert!(slots.take().is_ok(), "the slot is free again");
        assert!(stream.next().await.unwrap().is_err(), "the download is cut");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn an_export_read_to_its_end_lets_its_snapshot_and_slot_go_at_once() {
        use futures_util::StreamExt;
        let slots = ExportSlots::with_idle(Duration::from_secs(60));
        let (dropped, mut stream) = unread_export(&slots);
        assert!(stream.next().await.unwrap().is_ok(), "the header");
        assert!(stream.next().await.is_none(), "the end");
        // Its end let them go, before actix drops the stream.
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
        assert!(slots.take().is_ok());
        drop(stream);
    }

    #[test]
    fn a_worker_streams_one_export_at_a_time() {
        let slots = ExportSlots::per_worker();
        let held = slots.take().unwrap();
        let busy = slots.take().unwrap_err();
        assert_eq!((busy.status.as_u16(), busy.code), (503, "exports_busy"));
        drop(held);
        assert!(slots.take().is_ok(), "free again once the export ends");
    }

    #[test]
    fn a_lone_tag_with_a_comma_keeps_a_separator_so_an_import_reads_it_whole() {
        let tags = |t: &[&str]| tags_cell(&t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(tags(&["vip", "hot"]), "vip;hot");
        assert_eq!(tags(&["acme, inc"]), "acme, inc;");
        assert_eq!(tags(&["acme, inc", "vip"]), "acme, inc;vip");
        assert_eq!(tags(&[]), "");
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        line(
            &mut out,
            &[
                "plain".into(),
                "a,b".into(),
                "say \"hi\"".into(),
                "two\nlines".into(),
                "=SUM(A1)".into(),
                "+44 20".into(),
                String::new(),
                "-2+3+cmd|' /C calc'!A0".into(),
                "-12.5".into(),
                "+1 (555) 010-0199 x12".into(),
                "+A1".into(),
            ],
        );
        assert_eq!(
            out,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"'=SUM(A1)\",+44 20,,\
             \"'-2+3+cmd|' /C calc'!A0\",-12.5,+1 (555) 010-0199 x12,\"'+A1\"\r\n"
        );
    }
}
