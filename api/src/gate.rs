//! The front door, before any handler or extractor runs: a connection beyond its
//! address's limit is answered 429 and closed ([`crate::conns`]); a request to anything but the public endpoints is
//! authenticated from its headers before a byte of its body is read (an unauthenticated
//! client cannot hold a connection by sending a body slowly), and an authenticated
//! request's body must arrive whole within `body_timeout`, or reading it fails with 408
//! `body-timeout`. The caller found here is kept in the request for the handler.

use std::future::{Ready, ready};
use std::time::Duration;

use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::PayloadError;
use actix_web::web::{Bytes, Data};
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;

use crate::auth::{Caller, authenticate};
use crate::conns::Connection;
use crate::problem::ApiError;
use crate::state::AppState;

/// The message a body that came too slowly fails with (the JSON error handler turns it
/// into 408 `body-timeout`).
pub const BODY_TIMEOUT: &str = "request body not received in time";

#[derive(Debug, Clone, Copy)]
pub struct Gate;

impl<S> Transform<S, ServiceRequest> for Gate
where
    S: Service<ServiceRequest, Response = ServiceResponse, Error = Error> + 'static,
{
    type Response = ServiceResponse;
    type Error = Error;
    type Transform = GateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GateService { service }))
    }
}

#[derive(Debug)]
pub struct GateService<S> {
    service: S,
}

impl<S> Service<ServiceRequest> for GateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse, Error = Error> + 'static,
{
    type Response = ServiceResponse;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let Some(state) = req.app_data::<Data<AppState>>().cloned() else {
            return Box::pin(self.service.call(req));
        };
        if req.conn_data::<Connection>().is_some_and(|c| c.over_limit) {
            let response = ApiError::TooManyConnections.error_response();
            return Box::pin(async move { Ok(req.into_response(response)) });
        }
        // Everything but the public operations endpoints is authenticated here, whatever
        // the path looks like before the router decodes it (`/%761/...` is `/v1/...`).
        if !is_public(req.path()) {
            match authenticate(req.request(), &state.config) {
                Ok(caller) => {
                    req.extensions_mut().insert::<Caller>(caller);
                }
                Err(e) => {
                    let response = e.error_response();
                    return Box::pin(async move { Ok(req.into_response(response)) });
                }
            }
            let payload = req.take_payload();
            req.set_payload(timed(payload, state.config.body_timeout));
        }
        Box::pin(self.service.call(req))
    }
}

/// Paths served without credentials: health, readiness, metrics and the API document.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
}

/// `payload`, failing with [`BODY_TIMEOUT`] if it has not ended within `limit`.
fn timed(payload: Payload, limit: Duration) -> Payload {
    let deadline = tokio::time::Instant::now() + limit;
    let stream = futures_util::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, BODY_TIMEOUT);
                Some((Err::<Bytes, _>(PayloadError::Io(e)), None))
            }
        }
    });
    let stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(stream);
    Payload::from(stream)
}
