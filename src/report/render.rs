//! Renderers of a list of checks: text for people, JSON, Prometheus text exposition
//! format and a Nagios plugin line. Each takes the same checks.

use std::fmt::Write as _;

use super::{worst, Check, State};

/// On-call text: worst first, one line per check, colour only when `colour`.
pub fn text(title: &str, checks: &[Check], colour: bool) -> String {
    let mut sorted = checks.to_vec();
    super::sort_worst_first(&mut sorted);
    let state = worst(checks);
    let mut out = format!("{title}: {}\n", paint(state, colour));
    let idw = sorted.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &sorted {
        let _ = write!(
            out,
            "  {:<8} {:<idw$}  {}",
            paint(c.state, colour),
            c.id,
            c.value,
            idw = idw
        );
        if let Some(t) = &c.threshold {
            let _ = write!(out, "  (threshold {t})");
        }
        if !c.hint.is_empty() && c.state != State::Ok {
            let _ = write!(out, "\n  {:<8} {:<idw$}  → {}", "", "", c.hint, idw = idw);
        }
        out.push('\n');
    }
    out
}

fn paint(s: State, colour: bool) -> String {
    // Pad before colouring so the columns line up.
    let padded = format!("{:<8}", s.as_str());
    if !colour {
        return s.as_str().to_string();
    }
    let code = match s {
        State::Ok => "32",
        State::Warning => "33",
        State::Critical => "31;1",
        State::Unknown => "35",
    };
    format!("\x1b[{code}m{}\x1b[0m", padded.trim_end())
}

/// Prometheus text exposition: HELP and TYPE once per metric name, an `opsctl_` prefix,
/// plus one `opsctl_check_state` gauge per check (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
pub fn prometheus(checks: &[Check]) -> String {
    prometheus_with(checks, &[])
}

/// As [`prometheus`], plus metrics that belong to no check (e.g. per-table sizes).
pub fn prometheus_with(checks: &[Check], extra: &[super::Metric]) -> String {
    let mut out = String::new();
    let mut by_name: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut push = |name: String, help: &str, line: String| {
        if let Some(e) = by_name.iter_mut().find(|(n, _, _)| *n == name) {
            e.2.push(line);
        } else {
            by_name.push((name, help.to_string(), vec![line]));
        }
    };
    for c in checks {
        push(
            "opsctl_check_state".into(),
            "State of each opsctl check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            format!(
                "opsctl_check_state{{check=\"{}\"}} {}",
                escape_label(&c.id),
                c.state.exit_code()
            ),
        );
    }
    for m in checks.iter().flat_map(|c| &c.metrics).chain(extra) {
        {
            let name = format!("opsctl_{}", sanitize_name(&m.name));
            let labels = if m.labels.is_empty() {
                String::new()
            } else {
                let inner: Vec<String> = m
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{}=\"{}\"", sanitize_name(k), escape_label(v)))
                    .collect();
                format!("{{{}}}", inner.join(","))
            };
            push(
                name.clone(),
                &m.help,
                format!("{name}{labels} {}", fmt_float(m.value)),
            );
        }
    }
    for (name, help, lines) in by_name {
        let _ = writeln!(
            out,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', " ")
        );
        let _ = writeln!(out, "# TYPE {name} gauge");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

fn fmt_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One Nagios plugin line: `NAME STATE: text | label=value;warn;crit;; ...`.
pub fn nagios(name: &str, checks: &[Check]) -> String {
    let state = worst(checks);
    let mut bad: Vec<&Check> = checks.iter().filter(|c| c.state != State::Ok).collect();
    bad.sort_by_key(|c| std::cmp::Reverse(c.state.severity()));
    let text = if bad.is_empty() {
        format!("{} checks OK", checks.len())
    } else {
        bad.iter()
            .map(|c| {
                format!(
                    "{} {} ({})",
                    c.id,
                    c.state.as_str(),
                    c.value.replace('|', "/")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut perf = Vec::new();
    for c in checks {
        for m in &c.metrics {
            let mut label = sanitize_name(&m.name);
            for (_, v) in &m.labels {
                label.push('_');
                label.push_str(&sanitize_name(v));
            }
            perf.push(format!(
                "'{}'={};{};{};;",
                label,
                fmt_float(m.value),
                m.warn.map(fmt_float).unwrap_or_default(),
                m.crit.map(fmt_float).unwrap_or_default()
            ));
        }
    }
    let text = text.replace('\n', " ");
    if perf.is_empty() {
        format!("{} {}: {}\n", name.to_uppercase(), state.as_str(), text)
    } else {
        format!(
            "{} {}: {} | {}\n",
            name.to_uppercase(),
            state.as_str(),
            text,
            perf.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Metric;

    fn sample() -> Vec<Check> {
        vec![
            Check::new("connectivity", State::Ok, "connected in 2 ms", "").metric(Metric::new(
                "rtt_seconds",
                "Round trip",
                0.002,
            )),
            Check::new(
                "connections",
                State::Warning,
                "91% of 100",
                "close idle sessions",
            )
            .threshold("90% / 95%")
            .metric(Metric::new("connections_ratio", "Share used", 0.91).thresholds(0.9, 0.95)),
        ]
    }

    #[test]
    fn nagios_line_has_state_and_perfdata() {
        let l = nagios("opsctl health", &sample());
        assert!(l.starts_with("OPSCTL HEALTH WARNING: connections WARNING (91% of 100) | "));
        assert!(l.contains("'connections_ratio'=0.91;0.9;0.95;;"));
    }

    #[test]
    fn prometheus_has_help_and_type_once() {
        let p = prometheus(&sample());
        assert_eq!(p.matches("# TYPE opsctl_check_state gauge").count(), 1);
        assert!(p.contains("opsctl_check_state{check=\"connections\"} 1"));
        assert!(p.contains("opsctl_rtt_seconds 0.002"));
    }

    #[test]
    fn text_is_worst_first() {
        let t = text("health", &sample(), false);
        let w = t.find("connections").unwrap();
        let o = t.find("connectivity").unwrap();
        assert!(w < o, "{t}");
    }
}
