//! `/api/v1/events`: the organization's events as a pollable feed, and
//! `/api/v1/events/stream` as Server-Sent Events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, web};
use nexus_application::{EventUseCases, LiveEvents};
use nexus_domain::event::{parse_type_filter, type_matches};
use nexus_domain::{Actor, EventType, OrgId, StoredEvent};
use nexus_ports::contacts::SortValue;
use nexus_ports::events::LiveRecvError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::cursor::{CursorCodec, CursorScope, invalid_cursor};
use crate::dto::common::take_page;
use crate::dto::events::{EventDto, FeedQuery, StreamQuery};
use crate::problem::{ApiError, FieldError};
use crate::responses::{BadRequest, Forbidden, ServiceUnavailable, Unauthorized, Unprocessable};
use crate::routes::paging::limit_of;

type Events = web::Data<dyn EventUseCases>;
type Cursors = web::Data<CursorCodec>;

/// Rows read from the outbox per query when a stream catches up.
const REPLAY_PAGE: i64 = 200;

/// One page of the change feed. Unlike other lists, the cursor never runs out: poll
/// again with `nextCursor` to get what happened since.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub data: Vec<EventDto>,
    /// Where to resume: after the last event of `data` (or where this page started when
    /// `data` is empty). Also accepted as the stream's `Last-Event-ID`.
    pub next_cursor: String,
    /// Whether more events are available right now (otherwise poll later).
    pub has_more: bool,
}

/// A position in an organization's log. The types filter is not part of the scope: a
/// position means the same whatever is filtered, so one cursor serves the feed and the
/// stream under any filter.
fn scope(org: OrgId) -> CursorScope {
    CursorScope {
        org,
        list: "events",
        sort: "seq".into(),
        filters: String::new(),
    }
}

fn cursor_of(cursors: &CursorCodec, org: OrgId, seq: i64, id: uuid::Uuid) -> String {
    cursors.encode_position(&scope(org), &SortValue::Int(seq), id)
}

fn seq_of(cursors: &CursorCodec, org: OrgId, raw: &str) -> Result<i64, ApiError> {
    match cursors.decode_position(&scope(org), raw)? {
        (SortValue::Int(seq), _) if seq >= 0 => Ok(seq),
        _ => Err(invalid_cursor()),
    }
}

/// # Errors
/// 422 naming every unknown type.
pub fn types_of(raw: Option<&str>) -> Result<Vec<EventType>, ApiError> {
    parse_type_filter(raw.unwrap_or_default()).map_err(|unknown| {
        ApiError::validation(vec![FieldError {
            field: "types".into(),
            code: "unknown_event_type".into(),
            message: format!(
                "Unknown event type(s): {}. Known: {}.",
                unknown.join(", "),
                EventType::ALL.map(EventType::as_str).join(", ")
            ),
        }])
    })
}

/// The organization's events in the order they happened, for integrators that poll.
///
/// Keep the returned `nextCursor` and pass it as `after` next time: you get exactly the
/// events since, none twice. Events are kept for the configured retention.
#[utoipa::path(
    operation_id = "listEvents",
    tag = "events",
    params(FeedQuery),
    responses(
        (status = 200, description = "Events after the cursor, oldest first.", body = EventPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("")]
pub async fn list_events(
    auth: Auth,
    events: Events,
    cursors: Cursors,
    query: web::Query<FeedQuery>,
) -> Result<web::Json<EventPage>, ApiError> {
    let org = auth.0.org_id;
    let limit = limit_of(query.limit)?;
    let types = types_of(query.types.as_deref())?;
    let after = match query.after.as_deref() {
        Some(raw) => Some((seq_of(&cursors, org, raw)?, raw.to_owned())),
        None => None,
    };
    let mut rows = events
        .feed(auth.0, after.as_ref().map_or(0, |a| a.0), types, limit + 1)
        .await?;
    let has_more = take_page(&mut rows, limit);
    let next_cursor = match (rows.last(), after) {
        (Some(last), _) => cursor_of(&cursors, org, last.seq, last.event.id.as_uuid()),
        (None, Some((_, raw))) => raw,
        (None, None) => cursor_of(&cursors, org, 0, uuid::Uuid::nil()),
    };
    Ok(web::Json(EventPage {
        data: rows.iter().map(EventDto::from).collect(),
        next_cursor,
        has_more,
    }))
}

/// How the stream behaves; from configuration.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// A comment line this often keeps proxies from closing an idle stream.
    pub heartbeat: Duration,
    /// A stream ends after this long; the client reconnects with `Last-Event-ID` and is
    /// authenticated again. The credential is checked only when a stream opens (checking
    /// it per stream while open would poll the database), so this bounds how long a
    /// revoked key, an ended session or a removed member keeps receiving events.
    pub max_lifetime: Duration,
}

/// The organization's events as they happen, as Server-Sent Events.
///
/// Each message has `id:` (a cursor), `event:` (the type) and `data:` (the event as in
/// the feed). Reconnect with the `Last-Event-ID` header (browsers do it by themselves)
/// or `?lastEventId=` to receive exactly what was missed, then the live events. A
/// comment line (`: keep-alive`) arrives every 15 seconds when nothing else does. The
/// server ends a stream after 15 minutes (configurable); reconnect with `Last-Event-ID`.
#[utoipa::path(
    operation_id = "streamEvents",
    tag = "events",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last message received: replay from there."),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`.", content_type = "text/event-stream", body = String),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[get("/stream")]
pub async fn stream_events(
    req: HttpRequest,
    auth: Auth,
    events: Events,
    cursors: Cursors,
    settings: web::Data<StreamSettings>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = auth.0.org_id;
    let types = types_of(query.types.as_deref())?;
    let header = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().map_err(|_| invalid_cursor()))
        .transpose()?;
    let last = match header.or(query.last_event_id.as_deref()) {
        Some(raw) if !raw.is_empty() => Some(seq_of(&cursors, org, raw)?),
        _ => None,
    };
    // Subscribe before replaying (or reading where the log ends), so that nothing
    // committed in between is missed; the overlap is dropped by `seq`.
    let live = events.subscribe(auth.0)?;
    // Without a position, start at the end of the organization's log: its events commit
    // in `seq` order, so none committed later can have a lower one. A lag later then
    // re-reads from here, never the whole history.
    let start = match last {
        Some(seq) => seq,
        None => events.head(auth.0).await?,
    };
    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let stream = Stream {
        events: events.into_inner(),
        cursors: cursors.into_inner(),
        actor: auth.0,
        types,
        last: start,
        replay: last.is_some(),
        live,
        pending: VecDeque::new(),
        heartbeat,
        hello: true,
        ends: Box::pin(tokio::time::sleep(settings.max_lifetime)),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        s.next()
            .await
            .map(|frame| (Ok::<_, actix_web::Error>(frame), s))
    });
    Ok(HttpResponse::build(StatusCode::OK)
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Tells nginx-like proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// One client's stream: replay from the outbox, then the instance's fan-out filtered to
/// the caller's organization and types, deduplicated by `seq`.
struct Stream {
    events: Arc<dyn EventUseCases>,
    cursors: Arc<CursorCodec>,
    actor: Actor,
    types: Vec<EventType>,
    /// The last `seq` sent (or given by `Last-Event-ID`).
    last: i64,
    /// Catch up from the outbox before (again) listening: at the start after a
    /// `Last-Event-ID`, and whenever this receiver lagged behind the fan-out.
    replay: bool,
    live: LiveEvents,
    pending: VecDeque<StoredEvent>,
    heartbeat: tokio::time::Interval,
    hello: bool,
    ends: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Stream {
    fn frame(&self, e: &StoredEvent) -> Bytes {
        let id = cursor_of(
            &self.cursors,
            self.actor.org_id,
            e.seq,
            e.event.id.as_uuid(),
        );
        let data = serde_json::to_string(&EventDto::from(e)).unwrap_or_default();
        Bytes::from(format!(
            "id: {id}\nevent: {}\ndata: {data}\n\n",
            e.event.event_type.as_str()
        ))
    }

    /// The next bytes to send; `None` ends the stream (the client reconnects).
    async fn next(&mut self) -> Option<Bytes> {
        if std::mem::take(&mut self.hello) {
            // Sent at once, so clients (and proxies) see the stream open.
            return Some(Bytes::from_static(b"retry: 3000\n: connected\n\n"));
        }
        loop {
            if let Some(e) = self.pending.pop_front() {
                if e.seq > self.last {
                    self.last = e.seq;
                    return Some(self.frame(&e));
                }
                continue;
            }
            if self.replay {
                let page = self
                    .events
                    .feed(self.actor, self.last, self.types.clone(), REPLAY_PAGE)
                    .await;
                match page {
                    Ok(rows) => {
                        self.replay = rows.len() as i64 == REPLAY_PAGE;
                        self.pending.extend(rows);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream replay failed; closing it");
                        return None;
                    }
                }
            }
            tokio::select! {
                received = self.live.recv() => match received {
                    Ok(e) if e.event.organization_id == self.actor.org_id
                        && type_matches(&self.types, e.event.event_type)
                        && e.seq > self.last => self.pending.push_back((*e).clone()),
                    Ok(_) => {}
                    Err(LiveRecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event stream lagged; re-reading the outbox");
                        self.replay = true;
                    }
                    Err(LiveRecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                () = &mut self.ends => return None,
            }
        }
    }
}
