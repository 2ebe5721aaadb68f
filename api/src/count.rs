//! Counts responses by route pattern and status (`skuflow_api_responses_total`) and
//! times them (`skuflow_api_request_seconds`).

use std::future::{Ready, ready};

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::web::Data;

use crate::state::AppState;

#[derive(Debug, Clone, Copy)]
pub struct CountResponses;

impl<S, B> Transform<S, ServiceRequest> for CountResponses
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = Counter<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(Counter { service }))
    }
}

#[derive(Debug)]
pub struct Counter<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for Counter<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future =
        futures_util::future::LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let state = req.app_data::<Data<AppState>>().cloned();
        let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
        let started = std::time::Instant::now();
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if let Some(state) = state {
                let status = res.status().as_u16().to_string();
                state.metrics.responses.with_label_values(&[route.as_str(), status.as_str()]).inc();
                state
                    .metrics
                    .latency
                    .with_label_values(&[route.as_str()])
                    .observe(started.elapsed().as_secs_f64());
            }
            Ok(res)
        })
    }
}
