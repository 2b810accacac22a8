//! The one check model every report produces (id, value, threshold, state, hint), and
//! its renderers: text, JSON, Prometheus exposition format and Nagios plugin output.

pub mod health;
pub mod render;

use serde::Serialize;

/// A check's outcome, as monitoring plugins define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    /// Severity for "worst first": CRITICAL > WARNING > UNKNOWN > OK.
    pub fn severity(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Unknown => 1,
            State::Warning => 2,
            State::Critical => 3,
        }
    }

    /// The monitoring-plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    /// Judges `value` against warning and critical thresholds (higher is worse).
    pub fn judge_high(value: f64, warn: f64, crit: f64) -> State {
        if value >= crit {
            State::Critical
        } else if value >= warn {
            State::Warning
        } else {
            State::Ok
        }
    }

    /// Judges `value` against thresholds where lower is worse.
    pub fn judge_low(value: f64, warn: f64, crit: f64) -> State {
        if value <= crit {
            State::Critical
        } else if value <= warn {
            State::Warning
        } else {
            State::Ok
        }
    }
}

/// The worst state of a set of checks (OK when empty).
pub fn worst<'a>(checks: impl IntoIterator<Item = &'a Check>) -> State {
    checks
        .into_iter()
        .map(|c| c.state)
        .max_by_key(|s| s.severity())
        .unwrap_or(State::Ok)
}

/// One numeric sample behind a check, for Prometheus and Nagios perfdata.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Metric name without the `opsctl_` prefix, in base units (`_seconds`, `_bytes`, `_ratio`).
    pub name: String,
    pub help: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crit: Option<f64>,
}

impl Metric {
    pub fn new(name: &str, help: &str, value: f64) -> Self {
        Metric {
            name: name.to_string(),
            help: help.to_string(),
            value,
            labels: Vec::new(),
            warn: None,
            crit: None,
        }
    }

    pub fn label(mut self, k: &str, v: impl Into<String>) -> Self {
        self.labels.push((k.to_string(), v.into()));
        self
    }

    pub fn thresholds(mut self, warn: f64, crit: f64) -> Self {
        self.warn = Some(warn);
        self.crit = Some(crit);
        self
    }
}

/// One check: a stable id, what was measured, against what, the verdict and a hint.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: String,
    pub state: State,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    pub hint: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
}

impl Check {
    pub fn new(id: &str, state: State, value: impl Into<String>, hint: impl Into<String>) -> Self {
        Check {
            id: id.to_string(),
            state,
            value: value.into(),
            threshold: None,
            hint: hint.into(),
            metrics: Vec::new(),
        }
    }

    pub fn threshold(mut self, t: impl Into<String>) -> Self {
        self.threshold = Some(t.into());
        self
    }

    pub fn metric(mut self, m: Metric) -> Self {
        self.metrics.push(m);
        self
    }

    /// A check for something not set up: OK, never a false alarm.
    pub fn not_configured(id: &str, what: &str) -> Self {
        Check::new(id, State::Ok, "not configured", what)
    }
}

/// Sorts checks worst first, keeping the original order among equals.
pub fn sort_worst_first(checks: &mut [Check]) {
    checks.sort_by_key(|c| std::cmp::Reverse(c.state.severity()));
}
