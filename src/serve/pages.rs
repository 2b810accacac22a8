//! The dashboard pages (maud templates: every value from the database is escaped) and
//! their JSON under `/api/`. Each page's data comes from [`crate::report::dashboard`]
//! through a cache, so a browser left open costs one load per cache period. No
//! JavaScript: a `<meta refresh>` reloads the page; no asset comes from elsewhere.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Serialize;

use super::svg::{self, Axis, Bar};
use super::{App, Loaded};
use crate::report::dashboard::{self, AUDIT_WINDOWS};
use crate::report::State as CheckState;
use crate::text;
use crate::units::human_bytes;

/// Seconds between automatic reloads of a page.
const REFRESH_SECONDS: u32 = 60;

const STYLE: &str = r#"
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1b1f24;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:baseline}
header b{margin-right:.5rem}
nav{display:flex;flex-wrap:wrap;gap:.15rem .75rem}
nav a{color:#cfd6de;text-decoration:none;white-space:nowrap}
nav a.on{color:#fff;text-decoration:underline}
main{padding:.75rem 1rem;max-width:1100px}
h1{font-size:1.3rem;margin:.25rem 0 .75rem}
h2{font-size:1.1rem;margin:1.25rem 0 .5rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}
code,.q{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;word-break:break-word;white-space:pre-wrap}
.state{font-weight:600;padding:0 .35rem;border-radius:3px;white-space:nowrap}
.OK{background:#d7f2dd;color:#135c26}.WARNING{background:#fff0c2;color:#6b4e00}
.CRITICAL{background:#ffd6d6;color:#8a1010}.UNKNOWN{background:#e3e6ea;color:#333}
.facts{display:flex;flex-wrap:wrap;gap:.5rem}
.fact{background:#fff;border:1px solid #e3e6ea;padding:.4rem .6rem;border-radius:4px;min-width:9rem}
.fact small{display:block;color:#5b6570}
.muted{color:#5b6570}
.err{background:#ffd6d6;padding:.5rem;border-radius:4px}
svg.chart{width:100%;max-width:760px;height:auto;background:#fff;border:1px solid #e3e6ea;display:block}
td code{white-space:nowrap}
svg .grid{stroke:#e3e6ea}svg .tick{font-size:11px;fill:#5b6570}
svg rect.ok{fill:#2f9e44}svg rect.verified{fill:#1971c2}svg rect.failed{fill:#e03131}svg rect.plain{fill:#868e96}
svg .series{fill:none;stroke:#1971c2;stroke-width:2}svg circle.series{fill:#1971c2}
svg .limit{stroke:#e03131;stroke-dasharray:6 4}svg .projection{stroke:#f08c00;stroke-dasharray:4 4;stroke-width:2}
.legend span{margin-right:.75rem;white-space:nowrap}
.sw{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;vertical-align:middle;margin-right:.25rem}
.strip{display:flex;flex-wrap:wrap;gap:2px;margin:.25rem 0}
.strip span{display:inline-block;min-width:3.6rem;padding:.1rem .25rem;font-size:.75rem;border-radius:2px;text-align:center}
.m-live{background:#d7f2dd}.m-archived{background:#d0e3f7}.m-exported{background:#e5dbff}
.m-dropped{background:#e3e6ea;color:#5b6570}.m-detached{background:#fff0c2}.m-default{background:#ffd6d6}
form.login{background:#fff;border:1px solid #e3e6ea;padding:1rem;max-width:24rem}
form.login input{width:100%;padding:.4rem;margin:.25rem 0 .75rem;font:inherit}
"#;

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/backups", "Backups"),
    ("/partitions", "Partitions"),
    ("/size", "Size"),
    ("/activity", "Activity"),
    ("/audit", "Audit"),
    ("/jobs", "Jobs"),
];

fn layout(title: &str, path: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                title { "opsctl · " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    b { "opsctl" }
                    nav {
                        @for (href, name) in NAV {
                            a href=(href) class=[(*href == path).then_some("on")] { (name) }
                        }
                    }
                }
                main { (body) }
                footer class="muted" style="padding:0 1rem 1rem" {
                    "Rendered " (text::ts(&Utc::now())) " · reloads every " (REFRESH_SECONDS)
                    " s · JSON: " a href=(api_path(path)) { (api_path(path)) }
                }
            }
        }
    }
}

fn api_path(path: &str) -> String {
    if path == "/" {
        "/api/overview".into()
    } else {
        format!("/api{path}")
    }
}

/// The login form (401 when shown instead of a page).
pub fn login_page(error: Option<&str>, next: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "opsctl · log in" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { b { "opsctl" } }
                main {
                    h1 { "Log in" }
                    @if let Some(e) = error { p class="err" id="login-error" { (e) } }
                    form class="login" method="post" action="/login" {
                        label for="token" { "Token (the first line of the --token-file)" }
                        input type="password" id="token" name="token" autocomplete="current-password" required;
                        input type="hidden" name="next" value=(next);
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

fn state(s: CheckState) -> Markup {
    html! { span class=(format!("state {}", s.as_str())) { (s.as_str()) } }
}

fn bytes(b: i64) -> String {
    human_bytes(b)
}

fn ts(t: &DateTime<Utc>) -> String {
    text::ts(t)
}

fn error_box(what: &str, e: &str) -> Markup {
    html! { p class="err" { (what) ": " (e) } }
}

/// The page's data from its cache (see `Cached::fresh_or_stale`), or a first load.
async fn load<T, F, Fut>(
    app: &App,
    pick: impl FnOnce(&super::Shared) -> &Loaded<T>,
    f: F,
) -> Arc<Result<T, String>>
where
    T: Send + Sync + 'static,
    F: FnOnce(App) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, crate::error::Error>> + Send + 'static,
{
    let a = app.clone();
    pick(app)
        .fresh_or_stale(app.cfg.cache, move || async move {
            f(a).await.map_err(|e| e.to_string())
        })
        .await
}

fn json<T: Serialize>(v: &T) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

fn json_result<T: Serialize>(r: &Result<T, String>) -> Response {
    match r {
        Ok(v) => json(v),
        Err(e) => {
            let mut res = json(&serde_json::json!({ "error": e }));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            res
        }
    }
}

// ----------------------------------------------------------------------------- overview

async fn overview_data(
    app: &App,
) -> (
    Arc<crate::report::health::HealthReport>,
    Arc<Result<dashboard::Overview, String>>,
) {
    let report = app.report_for_page().await;
    let extra = load(
        app,
        |s| &s.overview,
        |a| async move { dashboard::overview(&a.cfg.settings, &a.cfg.policy).await },
    )
    .await;
    (report, extra)
}

pub async fn overview(State(app): State<App>) -> Markup {
    let (report, extra) = overview_data(&app).await;
    let mut checks: Vec<&crate::report::Check> = report.checks.iter().collect();
    checks.sort_by_key(|c| std::cmp::Reverse(c.state.severity()));
    let body = html! {
        h1 { "Overview " (state(report.state)) }
        div class="facts" {
            div class="fact" { small { "Database" } span id="database" { (report.database_name.as_deref().unwrap_or("-")) } }
            div class="fact" { small { "Server version" } span id="server-version" { (report.server_version.as_deref().unwrap_or("-")) } }
            div class="fact" { small { "Uptime" } span id="uptime" {
                @match extra.as_ref() {
                    Ok(o) => { (o.uptime_seconds.map(text::duration).unwrap_or_else(|| "-".into())) }
                    Err(_) => { "-" }
                }
            } }
            div class="fact" { small { "TLS" } span id="tls" {
                @match &report.tls {
                    Some(t) => { (t.version.as_deref().unwrap_or("on")) " " (t.cipher.as_deref().unwrap_or("")) }
                    None => { "off" }
                }
            } }
            div class="fact" { small { "Connection" } span id="connection" { (report.database) } }
        }
        h2 { "Health checks, worst first " span class="muted" id="check-count" { (checks.len()) } }
        div class="scroll" {
            table id="checks" {
                thead { tr { th { "Check" } th { "State" } th { "Value" } th { "Threshold" } th { "Hint" } } }
                tbody {
                    @for c in &checks {
                        tr data-check=(c.id) data-state=(c.state.as_str()) {
                            td { code { (c.id) } }
                            td { (state(c.state)) }
                            td class="q" { (c.value) }
                            td { (c.threshold.as_deref().unwrap_or("")) }
                            td { (c.hint) }
                        }
                    }
                }
            }
        }
        h2 { "Pages" }
        ul {
            li { a href="/backups" { "Backups" } ": timeline, drills, retention" }
            li { a href="/partitions" { "Partitions" } ": months, runway, archive runs" }
            li { a href="/size" { "Size" } ": tables, growth, disk limit" }
            li { a href="/activity" { "Activity" } ": connections, locks, slow statements" }
            li { a href="/audit" { "Audit" } ": chain, operations, changes" }
            li { a href="/jobs" { "Jobs" } ": schedule and last runs" }
        }
    };
    layout("Overview", "/", body)
}

pub async fn api_overview(State(app): State<App>) -> Response {
    let (report, extra) = overview_data(&app).await;
    json(&serde_json::json!({
        "health": &*report,
        "server_started_at": extra.as_ref().as_ref().ok().and_then(|o| o.server_started_at),
        "uptime_seconds": extra.as_ref().as_ref().ok().and_then(|o| o.uptime_seconds),
    }))
}

// ------------------------------------------------------------------------------ backups

async fn backups_data(app: &App) -> Arc<Result<dashboard::Backups, String>> {
    load(
        app,
        |s| &s.backups,
        |a| async move { Ok(dashboard::backups(&a.cfg.policy, Utc::now())) },
    )
    .await
}

pub async fn backups(State(app): State<App>) -> Markup {
    let data = backups_data(&app).await;
    let body = match data.as_ref() {
        Err(e) => error_box("cannot list the backups", e),
        Ok(b) => {
            let from = (b.now - chrono::Duration::days(b.days)).timestamp() as f64;
            // A little room right of today's bars.
            let to = b.now.timestamp() as f64 + (b.days as f64) * 86400.0 * 0.02;
            let fmt_b = |v: f64| human_bytes(v as i64);
            let fmt_s = |v: f64| text::duration_short(v);
            html! {
                h1 { "Backups" }
                p { "Retention: " (b.retention) "." }
                @if b.repositories.iter().all(|r| r.base_backups.is_empty()) {
                    p class="muted pitr-none" { "Point-in-time recovery: no base backup in any repository (opsctl wal setup --print, then opsctl basebackup)." }
                }
                @if b.repositories.is_empty() {
                    p class="err" { "No repository configured: set [backup] dir (or [[repositories]]) in the policy." }
                }
                @for r in &b.repositories {
                    section class="repo" data-repo=(r.name) {
                        h2 { "Repository " code { (r.name) } " " span class="muted" { (r.location) } }
                        @if let Some(e) = &r.error { (error_box("cannot list it", e)) }
                        p { span class="backup-count" { (r.backups.len()) } " " (if r.backups.len() == 1 { "backup" } else { "backups" }) " in the last " (b.days) " days (" (r.total) " in all)." }
                        @let bars: Vec<Bar> = r.backups.iter().map(|e| Bar {
                            x: e.summary.started_at.timestamp() as f64,
                            value: e.summary.file_bytes as f64,
                            class: status_class(&e.status),
                            title: format!("{} {}", e.summary.id, human_bytes(e.summary.file_bytes)),
                        }).collect();
                        @let durs: Vec<Bar> = r.backups.iter().map(|e| Bar {
                            x: e.summary.started_at.timestamp() as f64,
                            value: e.summary.duration_secs,
                            class: status_class(&e.status),
                            title: format!("{} {}", e.summary.id, text::duration_short(e.summary.duration_secs)),
                        }).collect();
                        p class="legend" {
                            span { i class="sw" style="background:#2f9e44" {} "drilled" }
                            span { i class="sw" style="background:#1971c2" {} "verified" }
                            span { i class="sw" style="background:#868e96" {} "not checked" }
                            span { i class="sw" style="background:#e03131" {} "failed" }
                        }
                        h2 { "Size per backup" }
                        (svg::bars(&Axis { from, to, fmt: &fmt_b, label: "backup file size per backup" }, &bars))
                        h2 { "Duration per backup" }
                        (svg::bars(&Axis { from, to, fmt: &fmt_s, label: "backup duration per backup" }, &durs))
                        div class="scroll" {
                            table class="backups" {
                                thead { tr { th { "Backup" } th { "Database" } th class="num" { "Size" } th class="num" { "Took" } th { "Verified" } th { "Drill" } th class="num" { "RTO" } } }
                                tbody {
                                    @for e in r.backups.iter().rev() {
                                        tr data-id=(e.summary.id) {
                                            td { code { (e.summary.id) } }
                                            td { (e.summary.database) }
                                            td class="num" { (human_bytes(e.summary.file_bytes)) }
                                            td class="num" { (text::duration_short(e.summary.duration_secs)) }
                                            td class="verified" { (match e.status.verify_ok { Some(true) => "ok", Some(false) => "FAILED", None => "-" }) }
                                            td class="drill" { (match e.status.drill_ok { Some(true) => "ok", Some(false) => "FAILED", None => "-" }) }
                                            td class="num rto" { (e.status.drill_rto_secs.map(text::duration_short).unwrap_or_else(|| "-".into())) }
                                        }
                                    }
                                }
                            }
                        }
                        @if !r.base_backups.is_empty() {
                            h2 { "Point-in-time recovery" }
                            @let newest = &r.base_backups[r.base_backups.len() - 1];
                            p class="pitr-window" {
                                "Recovery window: from " (text::ts(&r.base_backups[0].window.from_time)) " to "
                                @match newest.window.to_time {
                                    Some(t) => { strong { (text::ts(&t)) } }
                                    None => { strong class="err" { "nowhere: the newest base backup's WAL is not all archived" } }
                                }
                                " (" (r.base_backups.len()) " base " (if r.base_backups.len() == 1 { "backup" } else { "backups" }) ")."
                            }
                            div class="scroll" {
                                table class="base-backups" {
                                    thead { tr { th { "Base backup" } th { "Stopped" } th class="num" { "Size" } th { "Window to" } th { "Verified" } th { "PITR drill" } th class="num" { "RTO" } } }
                                    tbody {
                                        @for bb in r.base_backups.iter().rev() {
                                            tr data-id=(bb.summary.id) {
                                                td { code { (bb.summary.id) } }
                                                td { (text::ts(&bb.summary.stopped_at)) }
                                                td class="num" { (human_bytes(bb.summary.stored_bytes as i64)) }
                                                td class="window-to" { (bb.window.to_time.map(|t| text::ts(&t)).unwrap_or_else(|| "WAL MISSING".into())) }
                                                td { (match bb.status.verify_ok { Some(true) => "ok", Some(false) => "FAILED", None => "-" }) }
                                                td class="drill" { (match bb.status.drill_ok { Some(true) => "ok", Some(false) => "FAILED", None => "-" }) }
                                                td class="num rto" { (bb.status.drill_rto_secs.map(text::duration_short).unwrap_or_else(|| "-".into())) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        h2 { "The next prune would remove" }
                        @if r.next_prune.is_empty() { p class="prune-none" { "nothing" } }
                        @else {
                            ul class="prune" { @for (db, id, why) in &r.next_prune { li { code { (id) } " (" (db) "): " (why) } } }
                        }
                    }
                }
            }
        }
    };
    layout("Backups", "/backups", body)
}

fn status_class(s: &crate::backup::repo::Status) -> &'static str {
    if s.verify_ok == Some(false) || s.drill_ok == Some(false) {
        "failed"
    } else if s.drill_ok == Some(true) {
        "ok"
    } else if s.verify_ok == Some(true) {
        "verified"
    } else {
        "plain"
    }
}

pub async fn api_backups(State(app): State<App>) -> Response {
    json_result(backups_data(&app).await.as_ref())
}

// --------------------------------------------------------------------------- partitions

async fn partitions_data(app: &App) -> Arc<Result<dashboard::Partitions, String>> {
    load(
        app,
        |s| &s.partitions,
        |a| async move { dashboard::partitions(&a.cfg.settings, &a.cfg.policy).await },
    )
    .await
}

pub async fn partitions(State(app): State<App>) -> Markup {
    let data = partitions_data(&app).await;
    let body = match data.as_ref() {
        Err(e) => error_box("cannot list the partitions", e),
        Ok(p) => html! {
            h1 { "Partitions" }
            @if p.tables.is_empty() { p { "No partitioned table in the policy ([[partitions.tables]])." } }
            p class="legend" {
                @for s in ["live", "archived", "exported", "dropped", "detached", "default"] {
                    span { i class=(format!("sw m-{s}")) {} (s) }
                }
            }
            @for t in &p.tables {
                section class="ptable" data-table=(t.table) {
                    h2 { code { (t.table) } }
                    @if let Some(e) = &t.error { (error_box("cannot list it", e)) }
                    @if let Some(l) = &t.listing {
                        p {
                            "Runway: "
                            span class="runway" { (l.runway.future_months) }
                            " months ahead"
                            @if !l.runway.current_month { " — " span class="state CRITICAL" { "no partition for the current month" } }
                            @if let Some(m) = l.runway.last_month { " (last " (m.format("%Y-%m")) ")" }
                            ". Rows in the default partition: " span class="default-rows" { (l.rows_in_default) } "."
                        }
                        p class="muted" { span class="month-count" { (t.months.len()) } " months" }
                        div class="strip" {
                            @for m in &t.months {
                                span class=(format!("m-{}", m.state)) data-state=(m.state) title=(format!("{} {}: {} rows, {}", m.month, m.state, m.rows.unwrap_or(0), m.bytes.map(bytes).unwrap_or_default())) { (m.month) }
                            }
                            @if l.rows_in_default > 0 { span class="m-default" data-state="default" { "default " (l.rows_in_default) } }
                        }
                    }
                }
            }
            h2 { "Last archive runs" }
            @if p.archive_runs.is_empty() { p { "None recorded." } }
            @else {
                div class="scroll" {
                    table id="archive-runs" {
                        thead { tr { th { "Run" } th { "Table" } th { "Cutoff" } th { "State" } th class="num" { "Months" } th class="num" { "Rows" } th class="num" { "Size" } th { "Started" } th class="num" { "Took" } } }
                        tbody {
                            @for r in &p.archive_runs {
                                tr {
                                    td { (r.id) }
                                    td { (r.table) }
                                    td { (r.cutoff) }
                                    td class="run-state" { (r.state) }
                                    td class="num" { (r.moved_partitions) }
                                    td class="num moved-rows" { (r.moved_rows) }
                                    td class="num" { (bytes(r.moved_bytes)) }
                                    td { (ts(&r.started_at)) }
                                    td class="num" { (r.finished_at.map(|f| text::duration_short((f - r.started_at).num_milliseconds() as f64 / 1000.0)).unwrap_or_else(|| "-".into())) }
                                }
                            }
                        }
                    }
                }
            }
        },
    };
    layout("Partitions", "/partitions", body)
}

pub async fn api_partitions(State(app): State<App>) -> Response {
    json_result(partitions_data(&app).await.as_ref())
}

// --------------------------------------------------------------------------------- size

async fn size_data(app: &App) -> Arc<Result<dashboard::Size, String>> {
    load(
        app,
        |s| &s.size,
        |a| async move { dashboard::size(&a.cfg.settings, &a.cfg.policy).await },
    )
    .await
}

pub async fn size(State(app): State<App>) -> Markup {
    let data = size_data(&app).await;
    let body = match data.as_ref() {
        Err(e) => error_box("cannot measure the sizes", e),
        Ok(s) => {
            let r = &s.report;
            let now = Utc::now().timestamp() as f64;
            let mut points: Vec<(f64, f64)> = s
                .series
                .iter()
                .map(|(t, b)| (t.timestamp() as f64, *b as f64))
                .collect();
            points.push((now, r.database_bytes as f64));
            let from = points.first().map_or(now - 86400.0, |p| p.0);
            let mut to = now;
            let mut dashed = Vec::new();
            if let (Some(limit), Some(days)) = (r.disk_limit_bytes, r.days_until_limit) {
                let end = now + days.min(3650.0) * 86400.0;
                to = end;
                let reached = if days <= 3650.0 {
                    limit as f64
                } else {
                    r.database_bytes as f64
                };
                dashed.push(((now, r.database_bytes as f64), (end, reached)));
            }
            let fmt_b = |v: f64| human_bytes(v as i64);
            html! {
                h1 { "Size" }
                div class="facts" {
                    div class="fact" { small { "Database " (r.database) } span id="database-bytes" data-bytes=(r.database_bytes) { (bytes(r.database_bytes)) } }
                    @if let Some(g) = &r.growth {
                        div class="fact" { small { "Growth per week" } span { (g.bytes_per_week.map(|w| bytes(w as i64)).unwrap_or_else(|| "-".into())) } }
                    }
                    @if let Some(l) = r.disk_limit_bytes {
                        div class="fact" { small { "Disk limit" } span { (bytes(l)) } }
                    }
                    div class="fact" { small { "Limit reached in" } span id="days-until-limit" {
                        (r.days_until_limit.map(|d| format!("{d:.0} days")).unwrap_or_else(|| "-".into()))
                    } }
                }
                h2 { "Growth " span class="muted" { "(" (s.series.len()) " snapshots; dashed: projection to the disk limit)" } }
                (svg::line(&Axis { from, to, fmt: &fmt_b, label: "database size over time" }, &points, &dashed, r.disk_limit_bytes.map(|l| l as f64)))
                @if s.series.is_empty() { p class="muted" { "No snapshots yet: schedule `opsctl report size --snapshot`." } }
                h2 { "Largest tables" }
                div class="scroll" {
                    table id="tables" {
                        thead { tr { th { "Table" } th class="num" { "Total" } th class="num" { "Heap" } th class="num" { "Indexes" } th class="num" { "TOAST" } } }
                        tbody {
                            @for t in &r.tables {
                                tr data-table=(format!("{}.{}", t.schema, t.table)) {
                                    td { (t.schema) "." (t.table) }
                                    td class="num" { (bytes(t.total_bytes)) }
                                    td class="num" { (bytes(t.heap_bytes)) }
                                    td class="num" { (bytes(t.index_bytes)) }
                                    td class="num" { (bytes(t.toast_bytes)) }
                                }
                            }
                        }
                    }
                }
                h2 { "Largest indexes" }
                div class="scroll" {
                    table {
                        thead { tr { th { "Index" } th { "Table" } th class="num" { "Size" } } }
                        tbody { @for i in &r.indexes { tr { td { (i.schema) "." (i.index) } td { (i.table) } td class="num" { (bytes(i.bytes)) } } } }
                    }
                }
            }
        }
    };
    layout("Size", "/size", body)
}

pub async fn api_size(State(app): State<App>) -> Response {
    json_result(size_data(&app).await.as_ref())
}

// ----------------------------------------------------------------------------- activity

async fn activity_data(app: &App) -> Arc<Result<dashboard::Activity, String>> {
    load(
        app,
        |s| &s.activity,
        |a| async move { dashboard::activity(&a.cfg.settings, &a.cfg.policy).await },
    )
    .await
}

/// Statements from the cached health report's `slow_queries` details.
fn slow_statements(
    report: &crate::report::health::HealthReport,
    key: &str,
) -> Vec<serde_json::Value> {
    report
        .checks
        .iter()
        .find(|c| c.id == "slow_queries")
        .and_then(|c| c.details.as_ref())
        .and_then(|d| d.get(key))
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
}

fn statements_table(rows: &[serde_json::Value], id: &str) -> Markup {
    html! {
        div class="scroll" {
            table id=(id) {
                thead { tr { th class="num" { "Calls" } th class="num" { "Total ms" } th class="num" { "Mean ms" } th { "Query" } } }
                tbody {
                    @for s in rows {
                        tr {
                            td class="num" { (s["calls"]) }
                            td class="num" { (format!("{:.1}", s["total_ms"].as_f64().unwrap_or(0.0))) }
                            td class="num" { (format!("{:.1}", s["mean_ms"].as_f64().unwrap_or(0.0))) }
                            td class="q" { (s["query"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn activity(State(app): State<App>) -> Markup {
    let data = activity_data(&app).await;
    let report = app.report_for_page().await;
    let t = &app.cfg.policy.reports;
    let body = match data.as_ref() {
        Err(e) => error_box("cannot read pg_stat_activity", e),
        Ok(a) => {
            let idle_tx: Vec<_> = a
                .sessions
                .iter()
                .filter(|s| s.idle_in_transaction())
                .collect();
            let long: Vec<_> = a
                .sessions
                .iter()
                .filter(|s| {
                    s.active() && s.query_seconds.unwrap_or(0.0) >= t.long_query_warn_seconds
                })
                .collect();
            let blocked: Vec<_> = a
                .sessions
                .iter()
                .filter(|s| !s.blocked_by.is_empty())
                .collect();
            html! {
                h1 { "Activity" }
                p { span id="session-count" { (a.sessions.len()) } " client sessions of " (a.max_connections) " connections"
                    @if a.hidden > 0 { " (" (a.hidden) " of other roles hidden: grant pg_read_all_stats)" } "." }
                h2 { "Connections by state, application, user and client" }
                div class="scroll" {
                    table id="groups" {
                        thead { tr { th { "By" } th { "Value" } th class="num" { "Sessions" } } }
                        tbody { @for (w, k, n) in &a.groups { tr data-by=(w) { td { (w) } td class="q" { (k) } td class="num" { (n) } } } }
                    }
                }
                h2 { "Idle in transaction" }
                (sessions_table(&idle_tx, "idle-in-transaction"))
                h2 { "Long queries (≥ " (t.long_query_warn_seconds) " s)" }
                (sessions_table(&long, "long-queries"))
                h2 { "Lock waits (who blocks whom)" }
                @if blocked.is_empty() { p { "No session waits for a lock." } }
                @else {
                    ul id="lock-tree" {
                        @for s in &blocked {
                            li { "pid " (s.pid) " (" (s.application) ") waits for "
                                @for (i, b) in s.blocked_by.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    "pid " (b)
                                    @if let Some(o) = a.sessions.iter().find(|x| x.pid == *b) { " (" (o.application) ": " span class="q" { (o.query.as_deref().unwrap_or("")) } ")" }
                                }
                            }
                        }
                    }
                }
                h2 { "Slow statements by total time" }
                (statements_table(&slow_statements(&report, "top_by_total"), "top-total"))
                h2 { "Slow statements by mean time" }
                (statements_table(&slow_statements(&report, "top_by_mean"), "top-mean"))
                h2 { "All client sessions" }
                (sessions_table(&a.sessions.iter().collect::<Vec<_>>(), "sessions"))
            }
        }
    };
    layout("Activity", "/activity", body)
}

fn sessions_table(rows: &[&crate::report::connections::Session], id: &str) -> Markup {
    html! {
        @if rows.is_empty() { p id=(id) { "None." } }
        @else {
            div class="scroll" {
                table id=(id) {
                    thead { tr { th { "pid" } th { "User" } th { "Application" } th { "Client" } th { "State" } th class="num" { "Query for" } th { "Query" } } }
                    tbody {
                        @for s in rows {
                            tr data-pid=(s.pid) {
                                td { (s.pid) }
                                td { (s.user.as_deref().unwrap_or("-")) }
                                td class="app" { (s.application) }
                                td { (s.client.as_deref().unwrap_or("local")) }
                                td { (s.state.as_deref().unwrap_or("-")) }
                                td class="num" { (s.query_seconds.map(text::duration_short).unwrap_or_else(|| "-".into())) }
                                td class="q" { (s.query.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn api_activity(State(app): State<App>) -> Response {
    let data = activity_data(&app).await;
    let report = app.report_for_page().await;
    match data.as_ref() {
        Ok(a) => json(&serde_json::json!({
            "activity": a,
            "top_by_total": slow_statements(&report, "top_by_total"),
            "top_by_mean": slow_statements(&report, "top_by_mean"),
        })),
        Err(e) => json_result::<()>(&Err(e.clone())),
    }
}

// -------------------------------------------------------------------------------- audit

#[derive(serde::Deserialize)]
pub struct WindowQuery {
    #[serde(default)]
    window: Option<String>,
}

fn window_index(q: &WindowQuery) -> usize {
    q.window
        .as_deref()
        .and_then(|w| AUDIT_WINDOWS.iter().position(|(n, _)| *n == w))
        .unwrap_or(1)
}

async fn audit_data(app: &App, w: usize) -> Arc<Result<dashboard::Audit, String>> {
    load(
        app,
        |s| &s.audit[w],
        move |a| async move { dashboard::audit(&a.cfg.settings, &a.cfg.policy, w).await },
    )
    .await
}

pub async fn audit(State(app): State<App>, Query(q): Query<WindowQuery>) -> Markup {
    let w = window_index(&q);
    let data = audit_data(&app, w).await;
    let body = match data.as_ref() {
        Err(e) => error_box("cannot read the audit log", e),
        Ok(a) => html! {
            h1 { "Audit" }
            p { "Window: "
                @for (n, _) in AUDIT_WINDOWS {
                    @if n == a.window { strong class="on" { (n) } " " } @else { a href=(format!("/audit?window={n}")) { (n) } " " }
                }
            }
            @if let Some(e) = &a.error { (error_box("no audit report", e)) }
            @if let Some(r) = &a.report {
                h2 { "Chain" }
                @match &r.chain {
                    None => p { "No seal yet." },
                    Some(c) => div class="facts" {
                        div class="fact" { small { "Seals" } span id="seals" { (c.seals) } }
                        div class="fact" { small { "Sealed rows" } span { (c.sealed_rows) } }
                        div class="fact" { small { "Newest seal" } span id="newest-seal" {
                            (c.last_sealed_at.map(|t| format!("{} ({} ago)", ts(&t), text::duration((Utc::now() - t).num_seconds() as f64))).unwrap_or_else(|| "-".into()))
                        } }
                        div class="fact" { small { "Head" } code { (c.head_hash.as_deref().map(|h| &h[..h.len().min(16)]).unwrap_or("-")) } }
                        div class="fact" { small { "Unsealed rows" } span id="unsealed" { (c.unsealed_rows) } }
                    },
                }
                h2 { "Sensitive operations" }
                @let ops: Vec<_> = r.operations.iter().filter(|o| dashboard::SENSITIVE.contains(&o.command.as_str())).collect();
                @if ops.is_empty() { p { "None in this window." } }
                @else {
                    div class="scroll" {
                        table id="operations" {
                            thead { tr { th { "When" } th { "Command" } th { "Who" } th { "Host" } th { "Outcome" } } }
                            tbody {
                                @for o in ops.iter().rev() {
                                    tr { td { (ts(&o.started_at)) } td class="q" { (o.command_line) } td { (o.os_user.as_deref().unwrap_or("-")) " / " (o.db_role) } td { (o.host.as_deref().unwrap_or("-")) } td { (o.outcome) } }
                                }
                            }
                        }
                    }
                }
                h2 { "Changes by table and actor " span class="muted" { "(" span id="total-changes" { (r.total_changes) } " in all)" } }
                div class="scroll" {
                    table id="changes" {
                        thead { tr { th { "Table" } th { "Operation" } th { "Actor" } th class="num" { "Rows" } } }
                        tbody { @for c in &r.changes { tr { td { (c.table) } td { (c.operation) } td { (c.actor) } td class="num" { (c.count) } } } }
                    }
                }
                p { "Rows moved by opsctl: " (r.rows_moved) " in " (r.moves_total) " moves; trade deletions: " (r.trade_deletes_total) "." }
            }
        },
    };
    layout("Audit", "/audit", body)
}

pub async fn api_audit(State(app): State<App>, Query(q): Query<WindowQuery>) -> Response {
    let w = window_index(&q);
    json_result(audit_data(&app, w).await.as_ref())
}

// --------------------------------------------------------------------------------- jobs

async fn jobs_data(app: &App) -> Arc<Result<dashboard::Jobs, String>> {
    load(
        app,
        |s| &s.jobs,
        |a| async move { dashboard::jobs(&a.cfg.settings, &a.cfg.policy).await },
    )
    .await
}

pub async fn jobs(State(app): State<App>) -> Markup {
    let data = jobs_data(&app).await;
    let body = match data.as_ref() {
        Err(e) => error_box("cannot read the schedule", e),
        Ok(j) => html! {
            h1 { "Jobs" }
            p class="muted" { "Times in UTC; schedules in " (j.timezone) "." }
            @if j.jobs.is_empty() { p { "No job scheduled in the policy." } }
            @else {
                div class="scroll" {
                    table id="jobs" {
                        thead { tr { th { "Job" } th { "Schedule" } th { "Next" } th { "Last run" } th { "Outcome" } th class="num" { "Took" } } }
                        tbody {
                            @for job in &j.jobs {
                                tr data-job=(job.job) {
                                    td { (job.job) }
                                    td { code { (job.schedule) } }
                                    td { @for n in &job.next { (ts(n)) br; } }
                                    td { (job.last.as_ref().map(|r| ts(&r.started_at)).unwrap_or_else(|| "-".into())) }
                                    td { (job.last.as_ref().map(|r| r.outcome.as_str()).unwrap_or("-")) }
                                    td class="num" { (job.last.as_ref().and_then(|r| r.duration_seconds).map(text::duration_short).unwrap_or_else(|| "-".into())) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Runs of the last 7 days" }
            @if let Some(e) = &j.error { (error_box("no run history", e)) }
            @if j.runs.is_empty() { p { "None." } }
            @else {
                div class="scroll" {
                    table id="runs" {
                        thead { tr { th { "Started" } th { "Job" } th { "Outcome" } th class="num" { "Took" } th { "Error" } } }
                        tbody {
                            @for r in &j.runs {
                                tr { td { (ts(&r.started_at)) } td { (r.job) } td { (r.outcome) } td class="num" { (r.duration_seconds.map(text::duration_short).unwrap_or_else(|| "-".into())) } td class="q" { (r.error.as_deref().unwrap_or("")) } }
                            }
                        }
                    }
                }
            }
        },
    };
    layout("Jobs", "/jobs", body)
}

pub async fn api_jobs(State(app): State<App>) -> Response {
    json_result(jobs_data(&app).await.as_ref())
}
