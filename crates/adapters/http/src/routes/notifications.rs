//! Notifications: the customer's list, read marks, and the WebSocket that pushes them live.

use std::time::{Duration, Instant};

use actix_web::web::{Data, Path, Payload, Query};
use actix_web::{get, patch, post, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use chrono::{DateTime, Utc};
use ecom_identity::model::Principal;
use ecom_kernel::CustomerId;
use ecom_notifications::model::{Notification, NotificationId};
use ecom_notifications::service::BACKLOG_PAGE;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::error::{ApiError, Problem, ProblemKind};
use crate::extract::{bearer_token, Authenticated};
use crate::realtime::{notification_frame, Outbound};
use crate::AppState;

/// Largest frame a client may send.
const MAX_CLIENT_FRAME: usize = 4 * 1024;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_notifications).service(mark_read).service(mark_all_read).service(connect);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDto {
    id: Uuid,
    /// ORDER_CONFIRMED, ORDER_CANCELLED, PAYMENT_RECEIVED, ORDER_SHIPPED, ORDER_DELIVERED,
    /// REFUND_ISSUED; admins also COD_ORDER_PENDING and LOW_STOCK.
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    body: String,
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// PENDING, SENT, DELIVERED or READ.
    status: &'static str,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl From<&Notification> for NotificationDto {
    fn from(n: &Notification) -> Self {
        Self {
            id: n.id.as_uuid(),
            kind: n.kind.as_str(),
            title: n.title.clone(),
            body: n.body.clone(),
            data: n.data.clone(),
            status: n.status.as_str(),
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    data: Vec<NotificationDto>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only notifications not read yet.
    unread_only: Option<bool>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The caller's notifications, newest first.
#[utoipa::path(
    tag = "notifications",
    security(("bearer" = [])),
    params(NotificationQuery),
    responses(
        (status = 200, body = NotificationPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "limit or cursor invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/notifications")]
async fn list_notifications(
    state: Data<AppState>,
    auth: Authenticated,
    query: Query<NotificationQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = crate::extract::PageQuery { limit: query.limit, cursor: query.cursor }.to_request()?;
    let page = state.notifications.list(auth.0.customer_id, query.unread_only.unwrap_or(false), &page).await?;
    Ok(HttpResponse::Ok().json(NotificationPage {
        data: page.items.iter().map(NotificationDto::from).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(
    tag = "notifications",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Read"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOTIFICATION_NOT_FOUND (also another customer's)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/notifications/{id}/read")]
async fn mark_read(state: Data<AppState>, auth: Authenticated, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    state.notifications.mark_read(auth.0.customer_id, NotificationId::from_uuid(id.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Marks every notification of the caller read.
#[utoipa::path(
    tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "All read"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/notifications/read-all")]
async fn mark_all_read(state: Data<AppState>, auth: Authenticated) -> Result<HttpResponse, ApiError> {
    state.notifications.mark_all_read(auth.0.customer_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// The access token, for clients that cannot set an Authorization header (browsers).
    token: Option<String>,
}

/// The live feed. On connect the server sends every notification not yet acknowledged, then
/// each new one as `{"type":"notification","data":{...}}`. The client sends
/// `{"type":"ack","id":"..."}` (delivered: never sent again) and `{"type":"ping"}` (answered
/// `{"type":"pong"}`); anything else is answered `{"type":"error",...}`. The connection is closed
/// (1008, "token expired; reconnect with a new one") when the access token it opened with
/// expires.
#[utoipa::path(
    tag = "notifications",
    security(("bearer" = [])),
    params(WsQuery),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, description = "WEBSOCKET_UPGRADE_REQUIRED", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an invalid one", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/ws")]
async fn connect(
    req: HttpRequest,
    body: Payload,
    state: Data<AppState>,
    query: Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&req)
        .map(str::to_owned)
        .or_else(|| query.into_inner().token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()))
        .ok_or_else(|| ApiError::new(ProblemKind::Unauthenticated, "A bearer access token is required."))?;
    let (principal, valid_for) = state.identity.authenticate_for(&token)?;
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|_| {
        ApiError::new(ProblemKind::WebSocketUpgradeRequired, "Connect with a WebSocket upgrade request.")
    })?;
    let stream =
        stream.max_frame_size(MAX_CLIENT_FRAME).aggregate_continuations().max_continuation_size(MAX_CLIENT_FRAME);
    // In the request's span: the session's log lines carry its request id.
    actix_web::rt::spawn(
        run_session(state, principal, valid_for, session, stream).instrument(tracing::Span::current()),
    );
    Ok(response)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Ack { id: Uuid },
    Ping,
}

fn error_frame(code: &str, detail: &str) -> String {
    serde_json::json!({"type": "error", "code": code, "detail": detail}).to_string()
}

/// How long the session waits to queue its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Whether a send to the client went out within `limit`. A client that stops reading fills
/// its socket, then the session's outgoing queue, and a send waits until there is room: bounded,
/// so that a session stuck on such a client ends (its heartbeat and idle check do not run
/// while a send waits) instead of holding its task and connection forever.
async fn sent<F>(limit: Duration, send: F) -> bool
where
    F: std::future::Future<Output = Result<(), actix_ws::Closed>>,
{
    matches!(tokio::time::timeout(limit, send).await, Ok(Ok(())))
}

/// Sends everything `customer` has not acknowledged yet, a page at a time. `false` when the
/// connection is gone.
async fn send_backlog(state: &AppState, customer: CustomerId, session: &mut Session) -> bool {
    let limit = state.settings.ws.idle_timeout;
    let mut after = None;
    loop {
        match state.notifications.backlog(customer, after).await {
            Ok(page) => {
                for notification in &page {
                    if !sent(limit, session.text(notification_frame(notification))).await {
                        return false;
                    }
                }
                match page.last() {
                    Some(last) if i64::try_from(page.len()).unwrap_or(i64::MAX) >= BACKLOG_PAGE => {
                        after = Some(last.id);
                    }
                    _ => return true,
                }
            }
            Err(err) => {
                tracing::warn!(customer_id = %customer, error = %err, "backlog unavailable");
                let frame =
                    error_frame("BACKLOG_UNAVAILABLE", "Missed notifications could not be loaded; reconnect later.");
                return sent(limit, session.text(frame)).await;
            }
        }
    }
}

/// What the session does after a client frame; `None` ends it.
async fn on_text(state: &AppState, customer: CustomerId, session: &mut Session, text: &str) -> Result<(), ()> {
    let reply = match serde_json::from_str::<ClientFrame>(text) {
        Ok(ClientFrame::Ping) => Some(serde_json::json!({"type": "pong"}).to_string()),
        Ok(ClientFrame::Ack { id }) => {
            match state.notifications.acknowledge(customer, NotificationId::from_uuid(id)).await {
                Ok(()) => None,
                Err(ecom_notifications::NotificationError::NotFound(_)) => {
                    Some(error_frame("NOTIFICATION_NOT_FOUND", "No such notification."))
                }
                Err(err) => {
                    tracing::warn!(customer_id = %customer, error = %err, "ack not recorded");
                    Some(error_frame("ACK_FAILED", "The acknowledgement was not recorded; send it again."))
                }
            }
        }
        Err(_) => Some(error_frame("INVALID_FRAME", r#"Expected {"type":"ack","id":"<uuid>"} or {"type":"ping"}."#)),
    };
    let Some(reply) = reply else { return Ok(()) };
    if sent(state.settings.ws.idle_timeout, session.text(reply)).await {
        Ok(())
    } else {
        Err(())
    }
}

async fn run_session(
    state: Data<AppState>,
    principal: Principal,
    valid_for: Duration,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let customer = principal.customer_id;
    let settings = state.settings.ws;
    let limit = settings.idle_timeout;
    let hub = state.realtime.clone();
    // Registered before the backlog is read: nothing published in between is missed (a
    // notification may then arrive twice; clients tell copies apart by id).
    let (slot, mut inbox) = hub.register(customer);
    tracing::debug!(customer_id = %customer, session = slot, "websocket connected");
    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The session lasts as long as its token: a signed-out or revoked customer's connection ends
    // within the access token's lifetime, as any request with that token would be refused.
    let expiry = tokio::time::sleep(valid_for);
    tokio::pin!(expiry);
    let close: Option<CloseReason> = if send_backlog(&state, customer, &mut session).await {
        // Nothing was read while the backlog went out (the client's pongs included).
        let mut last_seen = Instant::now();
        heartbeat.reset();
        loop {
            tokio::select! {
                outbound = inbox.recv() => match outbound {
                    Some(Outbound::Frame(frame)) => {
                        if !sent(limit, session.text(frame.to_string())).await { break None; }
                    }
                    Some(Outbound::Resync) => {
                        if !send_backlog(&state, customer, &mut session).await { break None; }
                        last_seen = Instant::now();
                        heartbeat.reset();
                    }
                    // The api is stopping: the device reconnects (to another instance).
                    None if hub.is_closing() => break Some(CloseReason { code: CloseCode::Away, description: Some("server restarting; reconnect".into()) }),
                    // The hub dropped this session: it could not keep up.
                    None => break Some(CloseReason { code: CloseCode::Policy, description: Some("too slow; reconnect".into()) }),
                },
                message = stream.next() => {
                    last_seen = Instant::now();
                    match message {
                        Some(Ok(AggregatedMessage::Text(text))) => {
                            if on_text(&state, customer, &mut session, &text).await.is_err() { break None; }
                        }
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            if !sent(limit, session.pong(&bytes)).await { break None; }
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => {}
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            break Some(CloseReason { code: CloseCode::Unsupported, description: Some("text frames only".into()) });
                        }
                        Some(Ok(AggregatedMessage::Close(_))) | None => break None,
                        Some(Err(err)) => {
                            tracing::debug!(customer_id = %customer, error = %err, "websocket protocol error");
                            break Some(CloseReason { code: CloseCode::Protocol, description: None });
                        }
                    }
                }
                () = &mut expiry => {
                    break Some(CloseReason { code: CloseCode::Policy, description: Some("token expired; reconnect with a new one".into()) });
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > settings.idle_timeout {
                        break Some(CloseReason { code: CloseCode::Away, description: Some("idle".into()) });
                    }
                    if !sent(limit, session.ping(b"")).await { break None; }
                }
            }
        }
    } else {
        None
    };
    hub.unregister(customer, slot);
    // Briefly: after a send that timed out, the outgoing queue is still full.
    let _ = tokio::time::timeout(CLOSE_WAIT, session.close(close)).await;
    tracing::debug!(customer_id = %customer, session = slot, "websocket closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_send_the_client_never_takes_counts_as_a_connection_gone_after_the_limit() {
        let started = Instant::now();
        let never = std::future::pending::<Result<(), actix_ws::Closed>>();
        assert!(!sent(Duration::from_millis(50), never).await);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(sent(Duration::from_millis(50), async { Ok(()) }).await);
        assert!(!sent(Duration::from_millis(50), async { Err(actix_ws::Closed) }).await);
    }
}
