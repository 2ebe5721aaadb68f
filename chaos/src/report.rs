//! What a run shows an operator: a per-second timeline (requests by answer class,
//! p50/p99 latency), the faults as applied, each fault's recovery time, the steady-state
//! hypothesis before and after, the checker's verdict and the auditor's second opinion;
//! as a terminal summary, a JSON file and an HTML page with an SVG timeline.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::check::Verdict;
use crate::history::Entry;
use crate::nemesis::Applied;
use crate::scenario::{Hypothesis, Scenario};

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Second {
    pub t: usize,
    pub sent: usize,
    /// 2xx.
    pub ok: usize,
    /// 409: applied and rejected by the domain (insufficient stock, conflict, ...).
    pub rejected: usize,
    /// Other 4xx (hostile requests, not-yet-visible reads, ...).
    pub client_errors: usize,
    /// 5xx.
    pub server_errors: usize,
    /// No answer: refused, reset, timed out.
    pub no_answer: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Records the processors had not applied (highest sample in the second; local
    /// targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

impl Second {
    pub fn error_rate(&self) -> f64 {
        let errors = self.server_errors + self.no_answer;
        if self.sent == 0 { 0.0 } else { errors as f64 / self.sent as f64 }
    }
}

/// A window checked against the hypothesis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub name: String,
    pub from_s: f64,
    pub to_s: f64,
    pub requests: usize,
    pub error_rate: f64,
    pub p99_ms: f64,
    pub holds: bool,
}

/// A fault and how long the system took to answer well again after its heal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    pub fault: Applied,
    /// Seconds from the heal to the first second whose requests were answered within
    /// the hypothesis (error rate and command p99); none if that never came before the
    /// end of the workload.
    pub recovery_s: Option<f64>,
    /// Recovered within `max_recovery_s`, or the load ended before that bound did (a
    /// fault healed near the end cannot be judged, and is not held against the run).
    pub within_bound: bool,
    /// False when the load ended before recovery was seen and before the bound expired.
    #[serde(default = "yes")]
    pub judged: bool,
}

fn yes() -> bool {
    true
}

/// The auditor's second opinion, in short.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditSummary {
    pub ran: bool,
    pub ok: bool,
    /// Its violations follow from a broker loss the checker proved (offsets reused or
    /// writes acknowledged just before a broker kill).
    pub explained: bool,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: Scenario,
    pub started_at: String,
    pub requests: usize,
    pub by_kind: Vec<(String, usize)>,
    pub timeline: Vec<Second>,
    pub faults: Vec<Applied>,
    pub recoveries: Vec<Recovery>,
    pub windows: Vec<Window>,
    pub verdict: Verdict,
    pub audit: AuditSummary,
    /// Draws the generator made that found nothing to act on (no hold yet), and draws
    /// dropped because too many requests were in flight.
    pub skipped: usize,
    pub dropped: usize,
}

impl Report {
    /// Verdict: the checker found nothing unexplained, the auditor agrees, and the
    /// hypothesis held.
    pub fn passed(&self) -> bool {
        self.verdict.ok()
            && (!self.audit.ran || self.audit.ok || self.audit.explained)
            && self.windows.iter().all(|w| w.holds)
            && self.recoveries.iter().all(|r| r.within_bound)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Workload requests (not setup, resolution or final reads) by the second they were
/// sent in, counted from `t0_ms` for `seconds` seconds.
pub fn timeline(history: &[Entry], t0_ms: f64, seconds: usize) -> Vec<Second> {
    let mut out: Vec<Second> = (0..seconds).map(|t| Second { t, ..Second::default() }).collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    for e in history.iter().filter(|e| is_workload(e)) {
        let t = ((e.sent_ms - t0_ms) / 1000.0).floor();
        if t < 0.0 || t as usize >= seconds {
            continue;
        }
        let s = &mut out[t as usize];
        s.sent += 1;
        match e.status {
            Some(200..=299) => s.ok += 1,
            Some(409) => s.rejected += 1,
            Some(400..=499) => s.client_errors += 1,
            Some(_) => s.server_errors += 1,
            None => s.no_answer += 1,
        }
        if !e.hostile && e.method == "POST" {
            latencies[t as usize].push(e.latency_ms());
        }
    }
    for (s, mut l) in out.iter_mut().zip(latencies) {
        l.sort_by(f64::total_cmp);
        s.p50_ms = percentile(&l, 0.5);
        s.p99_ms = percentile(&l, 0.99);
    }
    out
}

fn is_workload(e: &Entry) -> bool {
    !matches!(e.kind.as_str(), "setup" | "resolve" | "settled-read" | "probe" | "final-read")
}

/// The hypothesis before the first fault and after the last heal plus the recovery
/// bound (whole workload when there are no faults).
pub fn windows(
    history: &[Entry],
    t0_ms: f64,
    duration_s: f64,
    faults: &[Applied],
    h: &Hypothesis,
) -> Vec<Window> {
    let rel = |ms: f64| (ms - t0_ms) / 1000.0;
    let mut spans = Vec::new();
    match (
        faults.iter().map(|f| rel(f.start_ms)).reduce(f64::min),
        faults.iter().map(|f| rel(f.end_ms)).reduce(f64::max),
    ) {
        (Some(first), Some(last)) => {
            spans.push(("before faults", 0.0, first));
            spans.push(("after recovery", last + h.max_recovery_s, duration_s));
        }
        _ => spans.push(("whole run", 0.0, duration_s)),
    }
    spans
        .into_iter()
        .filter(|(_, from, to)| to - from >= 1.0)
        .map(|(name, from_s, to_s)| {
            // Requests sent and answered inside the window: one sent just before a fault
            // and caught in it belongs to the fault, not to the steady state.
            let inside: Vec<&Entry> = history
                .iter()
                .filter(|e| {
                    is_workload(e)
                        && !e.hostile
                        && rel(e.sent_ms) >= from_s
                        && rel(e.done_ms) < to_s
                })
                .collect();
            let errors = inside.iter().filter(|e| e.status.is_none_or(|s| s >= 500)).count();
            let mut l: Vec<f64> =
                inside.iter().filter(|e| e.method == "POST").map(|e| e.latency_ms()).collect();
            l.sort_by(f64::total_cmp);
            let error_rate =
                if inside.is_empty() { 0.0 } else { errors as f64 / inside.len() as f64 };
            let p99_ms = percentile(&l, 0.99);
            Window {
                name: name.to_owned(),
                from_s,
                to_s,
                requests: inside.len(),
                error_rate,
                p99_ms,
                holds: error_rate <= h.max_error_rate && p99_ms <= h.max_p99_ms,
            }
        })
        .collect()
}

/// Recovery of each fault: from its heal to the first good second.
pub fn recoveries(
    timeline: &[Second],
    t0_ms: f64,
    faults: &[Applied],
    h: &Hypothesis,
) -> Vec<Recovery> {
    faults
        .iter()
        .map(|f| {
            let healed_s = (f.end_ms - t0_ms) / 1000.0;
            let good = timeline.iter().find(|s| {
                s.t as f64 >= healed_s.floor()
                    && s.ok > 0
                    && s.error_rate() <= h.max_error_rate
                    && s.p99_ms <= h.max_p99_ms
            });
            let recovery_s = good.map(|s| (s.t as f64 - healed_s).max(0.0));
            // The timeline ends with the load: it has one entry per second.
            let load_left_s = timeline.len() as f64 - healed_s;
            let judged = recovery_s.is_some() || load_left_s >= h.max_recovery_s;
            Recovery {
                fault: f.clone(),
                recovery_s,
                within_bound: recovery_s.map_or(!judged, |r| r <= h.max_recovery_s),
                judged,
            }
        })
        .collect()
}

/// The terminal summary.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario {} (seed {}): {} requests, {} faults",
        r.scenario.name,
        r.scenario.seed,
        r.requests,
        r.faults.len()
    );
    for (kind, n) in &r.by_kind {
        let _ = write!(s, "  {kind} {n}");
    }
    let _ = writeln!(s);
    for w in &r.windows {
        let _ = writeln!(
            s,
            "steady state {}: {} requests, error rate {:.4}, p99 {:.1} ms: {}",
            w.name,
            w.requests,
            w.error_rate,
            w.p99_ms,
            if w.holds { "holds" } else { "VIOLATED" }
        );
    }
    if !r.recoveries.is_empty() {
        let mut times: Vec<f64> = r.recoveries.iter().filter_map(|x| x.recovery_s).collect();
        times.sort_by(f64::total_cmp);
        let unrecovered =
            r.recoveries.iter().filter(|x| x.judged && x.recovery_s.is_none()).count();
        let unjudged = r.recoveries.iter().filter(|x| !x.judged).count();
        let _ = writeln!(
            s,
            "recovery after heal: p50 {:.1} s, p99 {:.1} s, max {:.1} s, never {unrecovered}, \
             load ended first {unjudged}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(0.0)
        );
    }
    for c in &r.verdict.checks {
        let _ = writeln!(
            s,
            "{:4} {:24} checked {:7}  violations {}",
            c.invariant, c.check, c.checked, c.violations
        );
    }
    for f in r.verdict.findings.iter().take(20) {
        let explained =
            f.explained_by.as_deref().map(|e| format!(" [explained: {e}]")).unwrap_or_default();
        let _ = writeln!(
            s,
            "  {} {} {} at {:.1} s, entries {:?}: {}{explained}",
            f.invariant,
            f.check,
            f.sku.as_deref().unwrap_or("-"),
            f.at_ms / 1000.0,
            f.entries,
            f.detail
        );
    }
    let _ = writeln!(
        s,
        "auditor: {}",
        if !r.audit.ran {
            "not run"
        } else if r.audit.ok {
            "clean"
        } else {
            "VIOLATIONS"
        }
    );
    let explained = r.verdict.findings.len() - r.verdict.unexplained();
    let _ = writeln!(
        s,
        "verdict: {}{}",
        if r.passed() { "PASS" } else { "FAIL" },
        if explained > 0 {
            format!(" ({explained} findings explained by the dev broker's known losses)")
        } else {
            String::new()
        }
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG chart of `series` (name, colour, values per second) over the run, with the
/// fault windows shaded.
fn chart(
    title: &str,
    unit: &str,
    series: &[(&str, &str, Vec<f64>)],
    faults: &[Applied],
    t0_ms: f64,
    log: bool,
) -> String {
    let (w, h, left, bottom) = (960.0, 220.0, 60.0, 30.0);
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(1) as f64;
    let max = series.iter().flat_map(|s| s.2.iter().copied()).fold(1.0, f64::max);
    let y = |v: f64| {
        let f = if log { (v.max(0.1) / 0.1).ln() / (max.max(1.0) / 0.1).ln() } else { v / max };
        h - bottom - f.clamp(0.0, 1.0) * (h - bottom - 20.0)
    };
    let x = |t: f64| left + t / n * (w - left - 10.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(svg, r#"<text x="{left}" y="14" font-weight="bold">{}</text>"#, escape(title));
    for f in faults {
        let (a, b) = (
            (f.start_ms - t0_ms) / 1000.0,
            ((f.end_ms - t0_ms) / 1000.0).max((f.start_ms - t0_ms) / 1000.0 + 0.2),
        );
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="20" width="{:.1}" height="{:.1}" fill="#f4b4b4" opacity="0.5"><title>{} {}</title></rect>"##,
            x(a),
            (x(b) - x(a)).max(1.0),
            h - bottom - 20.0,
            f.kind.name(),
            escape(&f.target)
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#444"/><line x1="{left}" y1="20" x2="{left}" y2="{0}" stroke="#444"/>"##,
        h - bottom,
        w - 10.0
    );
    let _ = write!(
        svg,
        r#"<text x="4" y="{:.1}">{max:.0} {unit}</text><text x="4" y="{:.1}">{}</text>"#,
        y(max) + 4.0,
        h - bottom,
        if log { "0.1" } else { "0" }
    );
    let _ = write!(svg, r#"<text x="{:.1}" y="{:.1}">{n:.0} s</text>"#, w - 40.0, h - 8.0);
    for (i, (name, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(t, v)| format!("{:.1},{:.1}", x(t as f64 + 0.5), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="14" fill="{colour}">{}</text>"#,
            300.0 + 110.0 * i as f64,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The HTML page.
pub fn html(r: &Report, t0_ms: f64) -> String {
    let col = |f: fn(&Second) -> f64| r.timeline.iter().map(f).collect::<Vec<f64>>();
    let traffic = chart(
        "requests per second by answer",
        "req/s",
        &[
            ("2xx", "#2a7", col(|s| s.ok as f64)),
            ("409", "#27a", col(|s| s.rejected as f64)),
            ("4xx", "#a72", col(|s| s.client_errors as f64)),
            ("5xx", "#d22", col(|s| s.server_errors as f64)),
            ("no answer", "#000", col(|s| s.no_answer as f64)),
        ],
        &r.faults,
        t0_ms,
        false,
    );
    let latency = chart(
        "command latency (log scale)",
        "ms",
        &[("p50", "#27a", col(|s| s.p50_ms)), ("p99", "#d22", col(|s| s.p99_ms))],
        &r.faults,
        t0_ms,
        true,
    );
    let lag = chart(
        "consumer lag (records not yet applied)",
        "records",
        &[("lag", "#72a", col(|s| s.lag.unwrap_or(0) as f64))],
        &r.faults,
        t0_ms,
        false,
    );
    let mut page = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>skuflow chaos report</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}.bad{color:#c00;font-weight:bold}.good{color:#070}</style>",
    );
    let _ = write!(
        page,
        "<h1>{}: <span class=\"{}\">{}</span></h1><p>{}</p>",
        escape(&r.scenario.name),
        if r.passed() { "good" } else { "bad" },
        if r.passed() { "PASS" } else { "FAIL" },
        escape(&r.scenario.description)
    );
    let _ = write!(
        page,
        "<p>seed {}, {} s at {} req/s offered, {} requests, started {}</p>",
        r.scenario.seed,
        r.scenario.duration_s,
        r.scenario.workload.rate,
        r.requests,
        escape(&r.started_at)
    );
    let _ = write!(page, "{traffic}<br>{latency}<br>{lag}");
    page.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>target</th><th>from s</th><th>to s</th><th>recovery s</th></tr>");
    for x in &r.recoveries {
        let rec = match x.recovery_s {
            Some(v) => format!("{v:.1}"),
            None if x.judged => "never".to_owned(),
            None => "load ended first".to_owned(),
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td class=\"{}\">{rec}</td></tr>",
            x.fault.kind.name(),
            escape(&x.fault.target),
            (x.fault.start_ms - t0_ms) / 1000.0,
            (x.fault.end_ms - t0_ms) / 1000.0,
            if x.within_bound { "good" } else { "bad" }
        );
    }
    page.push_str("</table><h2>Steady state</h2><table><tr><th>window</th><th>requests</th><th>error rate</th><th>p99 ms</th><th></th></tr>");
    for w in &r.windows {
        let _ = write!(
            page,
            "<tr><td>{} ({:.0}–{:.0} s)</td><td>{}</td><td>{:.4}</td><td>{:.1}</td><td class=\"{}\">{}</td></tr>",
            escape(&w.name),
            w.from_s,
            w.to_s,
            w.requests,
            w.error_rate,
            w.p99_ms,
            if w.holds { "good" } else { "bad" },
            if w.holds { "holds" } else { "violated" }
        );
    }
    page.push_str("</table><h2>Checker (from the client's history)</h2><table><tr><th>invariant</th><th>check</th><th>checked</th><th>violations</th></tr>");
    for c in &r.verdict.checks {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            c.invariant,
            c.check,
            c.checked,
            if c.violations == 0 { "good" } else { "bad" },
            c.violations
        );
    }
    page.push_str("</table><ul>");
    for f in r.verdict.findings.iter().take(100) {
        let explained = f
            .explained_by
            .as_deref()
            .map(|e| format!(" <i>explained: {}</i>", escape(e)))
            .unwrap_or_default();
        let _ = write!(
            page,
            "<li>{} {} {} at {:.1} s, entries {:?}: {}{explained}</li>",
            f.invariant,
            f.check,
            escape(f.sku.as_deref().unwrap_or("-")),
            f.at_ms / 1000.0,
            f.entries,
            escape(&f.detail)
        );
    }
    let _ = write!(
        page,
        "</ul><h2>Auditor (second opinion, from the topics)</h2><pre>{}</pre>",
        escape(&r.audit.text)
    );
    page
}
