//! A service's own metrics endpoint: `GET /metrics` (Prometheus text), `GET /healthz`
//! and `GET /readyz` (200, or 503 with the reason the service reports), on a small
//! actix-web server in a thread of its own.

use std::net::SocketAddr;

use actix_web::{App, HttpResponse, HttpServer, web};
use processor::Health;
use prometheus::{Encoder, Registry, TextEncoder};

#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    pub fn start(addr: SocketAddr, registry: Registry, health: Health) -> anyhow::Result<Self> {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(registry.clone()))
                .app_data(web::Data::new(health.clone()))
                .route("/metrics", web::get().to(metrics))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
        })
        .workers(1)
        .disable_signals()
        .bind(addr)?;
        let addr = server.addrs().first().copied().unwrap_or(addr);
        let server = server.run();
        let handle = server.handle();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || actix_web::rt::System::new().block_on(server))?;
        Ok(Self { addr, handle, thread })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(self) {
        actix_web::rt::System::new().block_on(self.handle.stop(true));
        let _ = self.thread.join();
    }
}

async fn healthz(health: web::Data<Health>) -> HttpResponse {
    match health.check() {
        Ok(()) => HttpResponse::Ok().body("ok\n"),
        Err(why) => HttpResponse::ServiceUnavailable().body(why),
    }
}

async fn readyz(health: web::Data<Health>) -> HttpResponse {
    match health.ready() {
        Ok(()) => HttpResponse::Ok().body("ready\n"),
        Err(why) => HttpResponse::ServiceUnavailable().body(format!("{why}\n")),
    }
}

async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
        Ok(()) => HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(body),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}
