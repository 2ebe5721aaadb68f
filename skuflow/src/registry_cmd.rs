//! `skuflow schema-registry`: a development schema registry, in memory, serving the part of
//! the Confluent Schema Registry REST API that skuflow and common clients use, so that
//! Avro can be tried (and is tested) without a JVM:
//!
//! - `PUT /config/{subject}`, `GET /config/{subject}`: the subject's compatibility level
//!   (`BACKWARD` by default, as Confluent's; `NONE` turns checks off);
//! - `POST /subjects/{subject}/versions`: register (an identical schema answers its id; a
//!   new one must pass the subject's check against the latest version, else 409 with
//!   error code 409);
//! - `POST /subjects/{subject}`: look a schema up in a subject;
//! - `GET /schemas/ids/{id}`, `GET /subjects`, `GET /subjects/{subject}/versions`,
//!   `GET /subjects/{subject}/versions/{version|latest}`.
//!
//! AVRO only; the checks are `apache_avro`'s schema resolution (`BACKWARD`: the new schema
//! reads what the latest wrote; `FORWARD`: the other way; `FULL`: both; the `_TRANSITIVE`
//! levels against every version). Everything is lost when it stops. Not for production:
//! run Confluent's or a compatible registry there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Mutex;

use actix_web::{HttpResponse, web};
use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    bind: SocketAddr,
}

#[derive(Default)]
struct Registry {
    /// Schema texts; id = index + 1.
    schemas: Vec<String>,
    /// Per subject, the ids of its versions (version = index + 1).
    subjects: BTreeMap<String, Vec<u32>>,
    compatibility: BTreeMap<String, String>,
}

type Shared = web::Data<Mutex<Registry>>;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn answer(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type(CONTENT_TYPE)
        .body(body.to_string())
}

fn error(status: u16, code: u32, message: impl Into<String>) -> HttpResponse {
    answer(status, json!({ "error_code": code, "message": message.into() }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let shared: Shared = web::Data::new(Mutex::new(Registry::default()));
    actix_web::rt::System::new().block_on(async move {
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(shared.clone())
                .app_data(web::JsonConfig::default().content_type_required(false))
                .route("/config/{subject}", web::put().to(put_config))
                .route("/config/{subject}", web::get().to(get_config))
                .route("/subjects", web::get().to(subjects))
                .route("/subjects/{subject}", web::post().to(lookup))
                .route("/subjects/{subject}/versions", web::post().to(register))
                .route("/subjects/{subject}/versions", web::get().to(versions))
                .route("/subjects/{subject}/versions/{version}", web::get().to(version))
                .route("/schemas/ids/{id}", web::get().to(by_id))
        })
        .workers(1)
        .bind(args.bind)?;
        let addr = server.addrs().first().copied().unwrap_or(args.bind);
        tracing::info!("schema registry listening on http://{addr}");
        server.run().await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn level(reg: &Registry, subject: &str) -> String {
    reg.compatibility.get(subject).cloned().unwrap_or_else(|| "BACKWARD".to_owned())
}

async fn put_config(
    reg: Shared,
    subject: web::Path<String>,
    body: web::Json<Value>,
) -> HttpResponse {
    let Some(level) = body.get("compatibility").and_then(Value::as_str) else {
        return error(422, 42203, "compatibility missing");
    };
    let known = ["NONE", "BACKWARD", "FORWARD", "FULL"];
    let base = level.trim_end_matches("_TRANSITIVE");
    if !known.contains(&base) {
        return error(422, 42203, format!("invalid compatibility level {level}"));
    }
    let mut reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    reg.compatibility.insert(subject.into_inner(), level.to_owned());
    answer(200, json!({ "compatibility": level }))
}

async fn get_config(reg: Shared, subject: web::Path<String>) -> HttpResponse {
    let reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    answer(200, json!({ "compatibilityLevel": level(&reg, &subject) }))
}

async fn subjects(reg: Shared) -> HttpResponse {
    let reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    answer(200, json!(reg.subjects.keys().collect::<Vec<_>>()))
}

/// The schema text of a request body, parsed; or why not (answered 422, code 42201).
fn schema_of(body: &Value) -> Result<(String, Schema), String> {
    let kind = body.get("schemaType").and_then(Value::as_str).unwrap_or("AVRO");
    if kind != "AVRO" {
        return Err(format!("schema type {kind} is not supported here"));
    }
    let text = body.get("schema").and_then(Value::as_str).ok_or("schema missing")?;
    let schema = Schema::parse_str(text).map_err(|e| format!("invalid schema: {e}"))?;
    Ok((text.to_owned(), schema))
}

/// Whether `new` may follow `earlier` (oldest first) under `level`.
fn compatible(level: &str, earlier: &[Schema], new: &Schema) -> Result<(), String> {
    let against: &[Schema] = match level.ends_with("_TRANSITIVE") {
        true => earlier,
        false => earlier.last().map(std::slice::from_ref).unwrap_or_default(),
    };
    let base = level.trim_end_matches("_TRANSITIVE");
    for old in against {
        if matches!(base, "BACKWARD" | "FULL") {
            SchemaCompatibility::can_read(old, new).map_err(|e| {
                format!("the new schema cannot read data written with an earlier one: {e}")
            })?;
        }
        if matches!(base, "FORWARD" | "FULL") {
            SchemaCompatibility::can_read(new, old).map_err(|e| {
                format!("an earlier schema cannot read data written with the new one: {e}")
            })?;
        }
    }
    Ok(())
}

async fn register(reg: Shared, subject: web::Path<String>, body: web::Json<Value>) -> HttpResponse {
    let (text, schema) = match schema_of(&body) {
        Ok(s) => s,
        Err(why) => return error(422, 42201, why),
    };
    let subject = subject.into_inner();
    let mut reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    let versions = reg.subjects.get(&subject).cloned().unwrap_or_default();
    if let Some(&id) = versions.iter().find(|&&id| reg.schemas[id as usize - 1] == text) {
        return answer(200, json!({ "id": id }));
    }
    let earlier: Vec<Schema> = versions
        .iter()
        .filter_map(|&id| Schema::parse_str(&reg.schemas[id as usize - 1]).ok())
        .collect();
    if let Err(why) = compatible(&level(&reg, &subject), &earlier, &schema) {
        return error(
            409,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\": {why}"
            ),
        );
    }
    let id = match reg.schemas.iter().position(|s| *s == text) {
        Some(i) => i as u32 + 1,
        None => {
            reg.schemas.push(text);
            reg.schemas.len() as u32
        }
    };
    reg.subjects.entry(subject).or_default().push(id);
    answer(200, json!({ "id": id }))
}

fn version_json(reg: &Registry, subject: &str, version: usize) -> Option<Value> {
    let id = *reg.subjects.get(subject)?.get(version.checked_sub(1)?)?;
    Some(json!({
        "subject": subject,
        "version": version,
        "id": id,
        "schema": reg.schemas[id as usize - 1],
    }))
}

async fn lookup(reg: Shared, subject: web::Path<String>, body: web::Json<Value>) -> HttpResponse {
    let (text, _) = match schema_of(&body) {
        Ok(s) => s,
        Err(why) => return error(422, 42201, why),
    };
    let reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    let Some(versions) = reg.subjects.get(subject.as_str()) else {
        return error(404, 40401, "Subject not found");
    };
    match versions.iter().position(|&id| reg.schemas[id as usize - 1] == text) {
        Some(i) => answer(200, version_json(&reg, &subject, i + 1).unwrap_or_default()),
        None => error(404, 40403, "Schema not found"),
    }
}

async fn versions(reg: Shared, subject: web::Path<String>) -> HttpResponse {
    let reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    match reg.subjects.get(subject.as_str()) {
        Some(ids) => answer(200, json!((1..=ids.len()).collect::<Vec<_>>())),
        None => error(404, 40401, "Subject not found"),
    }
}

async fn version(reg: Shared, path: web::Path<(String, String)>) -> HttpResponse {
    let (subject, version) = path.into_inner();
    let reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ids) = reg.subjects.get(&subject) else {
        return error(404, 40401, "Subject not found");
    };
    let number = match version.as_str() {
        "latest" | "-1" => ids.len(),
        v => v.parse().unwrap_or(0),
    };
    match version_json(&reg, &subject, number) {
        Some(v) => answer(200, v),
        None => error(404, 40402, "Version not found"),
    }
}

async fn by_id(reg: Shared, id: web::Path<u32>) -> HttpResponse {
    let reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    match id.checked_sub(1).and_then(|i| reg.schemas.get(i as usize)) {
        Some(schema) => answer(200, json!({ "schema": schema })),
        None => error(404, 40403, "Schema not found"),
    }
}
