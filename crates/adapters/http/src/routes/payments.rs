//! Payments: reading them, admin refunds, cash on delivery, and the providers' webhooks.

use actix_web::web::{Bytes, Data, Path};
use actix_web::{get, post, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use ecom_identity::model::Role;
use ecom_kernel::{BoundedText, OrderId, TextError, ValidationErrors};
use ecom_payments::model::{Payment, PaymentId, Refund};
use ecom_payments::ports::{WebhookRequest, WebhookVerifier};
use ecom_payments::service::{Viewer, WebhookOutcome};
use ecom_payments::PaymentError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{Admin, Authenticated, JsonBody};
use crate::routes::products::MoneyDto;
use crate::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_payment)
        .service(order_payments)
        .service(refund)
        .service(record_cash)
        .service(stripe_webhook)
        .service(paypal_webhook);
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDto {
    id: Uuid,
    order_id: Uuid,
    /// `simulated`, `stripe`, `paypal` or `cash_on_delivery`.
    provider: &'static str,
    provider_reference: Option<String>,
    amount: MoneyDto,
    /// PENDING, AUTHORIZED, PAID, FAILED, REFUNDED, PARTIALLY_REFUNDED, COLLECT_ON_DELIVERY.
    status: &'static str,
    refunded_amount: MoneyDto,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Payment> for PaymentDto {
    fn from(p: &Payment) -> Self {
        Self {
            id: p.id.as_uuid(),
            order_id: p.order_id.as_uuid(),
            provider: p.provider.as_str(),
            provider_reference: p.provider_reference.clone(),
            amount: p.amount.into(),
            status: p.status.as_str(),
            refunded_amount: p.refunded.into(),
            failure_reason: p.failure_reason.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundDto {
    id: Uuid,
    payment_id: Uuid,
    amount: MoneyDto,
    reason: Option<String>,
    provider_reference: Option<String>,
    /// REQUESTED (the provider has not answered yet; it is asked again until it does),
    /// PENDING (accepted, settling), SUCCEEDED, FAILED (refused; the amount went back).
    status: &'static str,
    /// Why the provider refused it (FAILED), in the provider's words.
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<&Refund> for RefundDto {
    fn from(r: &Refund) -> Self {
        Self {
            id: r.id.as_uuid(),
            payment_id: r.payment_id.as_uuid(),
            amount: r.amount.into(),
            reason: r.reason.clone(),
            provider_reference: r.provider_reference.clone(),
            status: r.status.as_str(),
            failure_reason: r.failure_reason.clone(),
            created_at: r.created_at,
        }
    }
}

/// A payment with its refunds.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDetail {
    #[serde(flatten)]
    payment: PaymentDto,
    refunds: Vec<RefundDto>,
}

/// The whole collection in one page (it is small): `nextCursor` is always null, as on the last
/// page of any list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentList {
    data: Vec<PaymentDto>,
    next_cursor: Option<String>,
}

/// The order shows its payment's status. The payment is what counts: a failed update is logged,
/// and the job staged with the payment's change (`payments.changed`, a refund's job, a provider
/// event) brings the order along.
async fn sync_order(state: &AppState, order: OrderId, payment: PaymentId) {
    if let Err(err) = state.orders.payment_changed(order, payment).await {
        tracing::warn!(order_id = %order, error = %err, "order payment status not updated");
    }
}

fn orders_viewer(auth: &Authenticated) -> ecom_orders::service::Viewer {
    ecom_orders::service::Viewer { customer_id: auth.0.customer_id, admin: auth.0.role == Role::Admin }
}

fn viewer(auth: &Authenticated) -> Viewer {
    Viewer { customer_id: auth.0.customer_id, admin: auth.0.role == Role::Admin }
}

/// One payment and its refunds. Its owner or an admin; anyone else gets 404.
#[utoipa::path(
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Payment id")),
    responses(
        (status = 200, body = PaymentDetail),
        (status = 404, description = "PAYMENT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/payments/{id}")]
async fn get_payment(state: Data<AppState>, auth: Authenticated, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let payment = state.payments.view(PaymentId::from_uuid(*id), viewer(&auth)).await?;
    let refunds = state.payments.refunds(payment.id).await?;
    Ok(HttpResponse::Ok().json(PaymentDetail {
        payment: PaymentDto::from(&payment),
        refunds: refunds.iter().map(RefundDto::from).collect(),
    }))
}

/// The payments of an order, oldest first. Its owner or an admin; anyone else gets 404.
#[utoipa::path(
    tag = "payments",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, body = PaymentList),
        (status = 404, description = "ORDER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orders/{id}/payments")]
async fn order_payments(state: Data<AppState>, auth: Authenticated, id: Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let order = OrderId::from_uuid(*id);
    // Someone else's order does not exist for this caller.
    state.orders.view(order, orders_viewer(&auth)).await?;
    let payments = state.payments.of_order(order, viewer(&auth)).await?;
    Ok(HttpResponse::Ok()
        .json(PaymentList { next_cursor: None, data: payments.iter().map(PaymentDto::from).collect() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundRequestDto {
    /// Absent: everything still refundable.
    amount: Option<MoneyDto>,
    /// Up to 500 characters.
    #[schema(max_length = 500)]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundResultDto {
    payment: PaymentDto,
    refund: RefundDto,
}

/// Refunds a payment, in part or in full. ADMIN only. 200 when the provider answered; 202
/// when it could not be reached: the refund is booked and is sent again until it answers.
#[utoipa::path(
    tag = "payments",
    security(("bearer" = ["ADMIN"])),
    params(("id" = Uuid, Path, description = "Payment id")),
    request_body = RefundRequestDto,
    responses(
        (status = 200, body = RefundResultDto),
        (status = 202, body = RefundResultDto),
        (status = 404, description = "PAYMENT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "INVALID_TRANSITION: not paid; CONCURRENT_MODIFICATION", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "REFUND_EXCEEDS_PAID, VALIDATION_FAILED, PROVIDER_REJECTED", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/{id}/refund")]
async fn refund(
    state: Data<AppState>,
    admin: Admin,
    id: Path<Uuid>,
    body: JsonBody<RefundRequestDto>,
) -> Result<HttpResponse, ApiError> {
    let RefundRequestDto { amount, reason } = body.into_inner();
    let amount = amount
        .map(|a| a.parse())
        .transpose()
        .map_err(|e| ValidationErrors::single("amount.currency", e.to_string()))?;
    let reason = match reason.as_deref().map(|r| BoundedText::parse(r, 500)) {
        None | Some(Err(TextError::Empty)) => None,
        Some(Ok(reason)) => Some(reason.as_str().to_owned()),
        Some(Err(e)) => return Err(ValidationErrors::single("reason", e.to_string()).into()),
    };
    let result = match state.payments.refund(PaymentId::from_uuid(*id), amount, reason).await {
        Ok(result) => result,
        // The amount went back to the payment: its order shows it again (it may have followed
        // the booked refund meanwhile).
        Err(PaymentError::RefundRefused { payment, order, reason }) => {
            if let Err(err) = state.orders.refund_refused(order, payment, &reason).await {
                tracing::warn!(order_id = %order, error = %err, "order payment status not updated");
            }
            return Err(PaymentError::RefundRefused { payment, order, reason }.into());
        }
        Err(err) => return Err(err.into()),
    };
    sync_order(&state, result.payment.order_id, result.payment.id).await;
    tracing::info!(
        payment_id = %result.payment.id,
        refund_id = %result.refund.id,
        amount = result.refund.amount.amount(),
        status = result.refund.status.as_str(),
        actor = %admin.0.customer_id,
        "refund requested"
    );
    let body = RefundResultDto { payment: PaymentDto::from(&result.payment), refund: RefundDto::from(&result.refund) };
    Ok(if result.refund.status == ecom_payments::model::RefundStatus::Requested {
        HttpResponse::Accepted().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CashRecordDto {
    order_id: Uuid,
    /// Exactly the order's total.
    amount_collected: MoneyDto,
}

/// Records the cash a courier collected for a cash-on-delivery order: its payment becomes
/// PAID. Recording the same amount again changes nothing; a cancelled order's is refused. ADMIN
/// only.
#[utoipa::path(
    tag = "payments",
    security(("bearer" = ["ADMIN"])),
    request_body = CashRecordDto,
    responses(
        (status = 200, body = PaymentDto),
        (status = 404, description = "PAYMENT_NOT_FOUND: the order has no cash-on-delivery payment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "INVALID_TRANSITION: the order was cancelled (no cash is collected for it)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "AMOUNT_MISMATCH", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/cod/record")]
async fn record_cash(
    state: Data<AppState>,
    admin: Admin,
    body: JsonBody<CashRecordDto>,
) -> Result<HttpResponse, ApiError> {
    let CashRecordDto { order_id, amount_collected } = body.into_inner();
    let collected =
        amount_collected.parse().map_err(|e| ValidationErrors::single("amountCollected.currency", e.to_string()))?;
    let order = OrderId::from_uuid(order_id);
    // A cancelled order's collection is being cancelled by its compensation (or was already).
    state.orders.check_cash_collectable(order).await?;
    let payment = state.payments.record_cash(order, collected).await?;
    sync_order(&state, payment.order_id, payment.id).await;
    tracing::info!(payment_id = %payment.id, order_id = %order_id, actor = %admin.0.customer_id, "cash recorded");
    Ok(HttpResponse::Ok().json(PaymentDto::from(&payment)))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    received: bool,
    /// The event was seen before: nothing happened.
    duplicate: bool,
}

fn webhook_request(req: &HttpRequest, body: Bytes) -> WebhookRequest {
    WebhookRequest {
        headers: req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    }
}

async fn receive(
    state: &AppState,
    verifier: &dyn WebhookVerifier,
    req: &HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let outcome = state.payments.receive_webhook(verifier, &webhook_request(req, body)).await;
    match outcome {
        Ok(WebhookOutcome::Accepted(event)) => {
            tracing::info!(provider = %event.provider, event_id = %event.event_id, kind = event.kind.as_str(), "webhook accepted");
            Ok(HttpResponse::Ok().json(WebhookAck { received: true, duplicate: false }))
        }
        Ok(WebhookOutcome::Duplicate(event)) => {
            tracing::info!(provider = %event.provider, event_id = %event.event_id, "duplicate webhook ignored");
            Ok(HttpResponse::Ok().json(WebhookAck { received: true, duplicate: true }))
        }
        Err(err) => {
            tracing::warn!(error = %err, "webhook refused");
            Err(err.into())
        }
    }
}

/// Stripe's webhook: raw body, `Stripe-Signature: t=<unix>,v1=<hex>` (HMAC-SHA256 of
/// `t.body` with `STRIPE_WEBHOOK_SECRET`), 300 s tolerance. An event id seen before → 200 and
/// no effect. Bad, missing or stale signature → 400.
#[utoipa::path(
    tag = "payments",
    request_body(content = String, description = "The event, as Stripe sent it", content_type = "application/json"),
    responses(
        (status = 200, body = WebhookAck),
        (status = 400, description = "WEBHOOK_SIGNATURE_INVALID, MALFORMED_WEBHOOK", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/webhooks/stripe")]
async fn stripe_webhook(state: Data<AppState>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    receive(&state, state.stripe_webhooks.as_ref(), &req, body).await
}

/// PayPal's webhook, verified by PayPal's verify-webhook-signature API (needs
/// `PAYPAL_WEBHOOK_ID`; without it every PayPal webhook is refused). Same dedupe as Stripe.
#[utoipa::path(
    tag = "payments",
    request_body(content = String, description = "The event, as PayPal sent it", content_type = "application/json"),
    responses(
        (status = 200, body = WebhookAck),
        (status = 400, description = "WEBHOOK_SIGNATURE_INVALID, MALFORMED_WEBHOOK", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/webhooks/paypal")]
async fn paypal_webhook(state: Data<AppState>, req: HttpRequest, body: Bytes) -> Result<HttpResponse, ApiError> {
    receive(&state, state.paypal_webhooks.as_ref(), &req, body).await
}
