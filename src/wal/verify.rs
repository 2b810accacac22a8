//! `wal verify`: the archive holds every segment from a start segment (the oldest kept
//! base backup's start, or else the oldest archived segment) to the newest one, each on
//! the timeline the history says it was written on — as WAL-G's wal-verify. The newest
//! timeline's `.history` file names the timelines before it and where each one ended.

use serde::Serialize;

use super::{archive, format_lsn, list, load_info, lsn_segment, parse_lsn, Segment, WalName};
use crate::backup::keys::KeyMaterial;
use crate::error::Error;
use crate::storage::Repository;

/// One line of a `.history` file: timeline `parent` ended at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Switch {
    pub parent: u32,
    pub end: u64,
}

/// Parses a timeline history file (`parentTLI <tab> switchpoint <tab> reason`, `#`
/// comments).
pub fn parse_history(text: &str) -> Result<Vec<Switch>, String> {
    let mut out: Vec<Switch> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let parent = parts.next().and_then(|p| p.parse::<u32>().ok());
        let end = parts.next().and_then(parse_lsn);
        let (Some(parent), Some(end)) = (parent, end) else {
            return Err(format!(
                "line {} is not `timeline switchpoint reason`",
                i + 1
            ));
        };
        if let Some(prev) = out.last() {
            if parent <= prev.parent || end < prev.end {
                return Err(format!("line {}: timelines out of order", i + 1));
            }
        }
        out.push(Switch { parent, end });
    }
    Ok(out)
}

/// A run of missing segments on one timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
}

/// What the archive holds on one timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineSummary {
    pub timeline: u32,
    pub segments: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub history: bool,
    pub partial: u64,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub system_identifier: String,
    pub wal_segment_size: u32,
    /// The newest timeline, whose history is followed.
    pub timeline: u32,
    /// `(timeline, end LSN)` of each timeline before it.
    pub history: Vec<(u32, String)>,
    /// First and last segment checked (none when nothing is archived).
    pub from: Option<String>,
    pub to: Option<String>,
    pub checked: u64,
    pub gaps: Vec<Gap>,
    /// Other problems (a missing or unreadable history file).
    pub problems: Vec<String>,
    pub timelines: Vec<TimelineSummary>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.gaps.is_empty() && self.problems.is_empty()
    }
}

/// The timeline a segment number belongs to, by the newest timeline's history.
fn timeline_of(number: u64, newest: u32, switches: &[Switch], seg_size: u32) -> u32 {
    let mut tli = newest;
    for (i, s) in switches.iter().enumerate() {
        if number < lsn_segment(s.end, seg_size) {
            return s.parent;
        }
        tli = switches.get(i + 1).map(|n| n.parent).unwrap_or(newest);
    }
    tli
}

/// Verifies the archive from `start` (a segment; its number is used, the timeline comes
/// from the history) or, without one, from the oldest archived segment on the newest
/// timeline's history. Base backups call this with their start segment.
pub fn verify(
    repo: &Repository,
    keys: &[KeyMaterial],
    start: Option<Segment>,
) -> Result<Report, Error> {
    let info = load_info(repo)?.ok_or_else(|| {
        Error::Verify(format!(
            "nothing is archived in repository {} (no {})",
            repo.display(),
            super::INFO_KEY
        ))
    })?;
    let system_id = info.system_id()?;
    let seg_size = info.wal_segment_size;
    let files = list(repo, system_id)?;

    let mut present = std::collections::HashSet::new();
    let mut timelines: std::collections::BTreeMap<u32, TimelineSummary> = Default::default();
    let summary = |timelines: &mut std::collections::BTreeMap<u32, TimelineSummary>, t: u32| {
        timelines.entry(t).or_insert_with(|| TimelineSummary {
            timeline: t,
            segments: 0,
            first: None,
            last: None,
            history: false,
            partial: 0,
        });
    };
    for f in &files {
        let t = f.name.timeline();
        summary(&mut timelines, t);
        let s = timelines.get_mut(&t).expect("inserted");
        match f.name {
            WalName::Segment(seg) => {
                present.insert((seg.tli, seg.number(seg_size)));
                s.segments += 1;
                if s.first.is_none() {
                    s.first = Some(seg.name());
                }
                s.last = Some(seg.name());
            }
            WalName::Partial(_) => s.partial += 1,
            WalName::History(_) => s.history = true,
            WalName::Backup(..) => {}
        }
    }
    let newest = timelines.keys().next_back().copied().unwrap_or(1);
    let mut problems = Vec::new();
    let mut switches = Vec::new();
    if newest > 1 {
        let hname = WalName::History(newest);
        let hkey = super::key(system_id, &hname);
        if repo.exists(&hkey)? {
            let mut text = Vec::new();
            match archive::read_sealed(repo, keys, &hkey, |c| {
                text.extend_from_slice(c);
                Ok(())
            }) {
                Ok(_) => match parse_history(&String::from_utf8_lossy(&text)) {
                    Ok(s) => switches = s,
                    Err(why) => problems.push(format!("{}: {why}", hname.name())),
                },
                Err(e) => problems.push(format!("{} cannot be read: {e}", hname.name())),
            }
        } else {
            problems.push(format!(
                "{} is not archived: the timelines before {newest} cannot be followed",
                hname.name()
            ));
        }
    }

    // Segments on the path of the newest timeline's history.
    let on_path: Vec<u64> = present
        .iter()
        .filter(|(t, n)| timeline_of(*n, newest, &switches, seg_size) == *t)
        .map(|(_, n)| *n)
        .collect();
    let last = on_path.iter().copied().max();
    let first = match start {
        Some(s) => Some(s.number(seg_size)),
        None => on_path.iter().copied().min(),
    };
    let mut gaps: Vec<Gap> = Vec::new();
    let mut checked = 0;
    let (mut from, mut to) = (None, None);
    if let (Some(first), Some(last)) = (first, last) {
        let name = |n: u64| {
            Segment::from_number(timeline_of(n, newest, &switches, seg_size), n, seg_size).name()
        };
        from = Some(name(first));
        to = Some(name(last.max(first)));
        if first > last {
            problems.push(format!(
                "the newest archived segment {} is older than the start {}",
                name(last),
                name(first)
            ));
        }
        for n in first..=last {
            checked += 1;
            let t = timeline_of(n, newest, &switches, seg_size);
            if present.contains(&(t, n)) {
                continue;
            }
            match gaps.last_mut() {
                Some(g) if g.timeline == t && g.last == name(n - 1) => {
                    g.last = name(n);
                    g.segments += 1;
                }
                _ => gaps.push(Gap {
                    timeline: t,
                    first: name(n),
                    last: name(n),
                    segments: 1,
                }),
            }
        }
    } else if let Some(s) = start {
        problems.push(format!(
            "no segment is archived on the history of timeline {newest} (start {})",
            s.name()
        ));
    }
    Ok(Report {
        system_identifier: info.system_identifier.clone(),
        wal_segment_size: seg_size,
        timeline: newest,
        history: switches
            .iter()
            .map(|s| (s.parent, format_lsn(s.end)))
            .collect(),
        from,
        to,
        checked,
        gaps,
        problems,
        timelines: timelines.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u32 = 16 << 20;

    #[test]
    fn history_files_parse() {
        let h =
            "1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tat restore point \"x\"\n";
        let s = parse_history(h).unwrap();
        assert_eq!(
            s,
            vec![
                Switch {
                    parent: 1,
                    end: 0x3000060
                },
                Switch {
                    parent: 2,
                    end: 0x5000000
                }
            ]
        );
        assert!(parse_history("1 zz reason").is_err());
        assert!(parse_history("2\t0/5\tx\n1\t0/6\ty").is_err());
    }

    #[test]
    fn segments_belong_to_the_timeline_of_their_history() {
        let s = parse_history("1\t0/3000060\tx\n2\t0/5000000\ty\n").unwrap();
        // Segment 3 holds the switch at 0/3000060: it is on timeline 2.
        assert_eq!(timeline_of(2, 3, &s, MB16), 1);
        assert_eq!(timeline_of(3, 3, &s, MB16), 2);
        assert_eq!(timeline_of(4, 3, &s, MB16), 2);
        // 0/5000000 is a segment boundary: segment 5 is wholly timeline 3's.
        assert_eq!(timeline_of(5, 3, &s, MB16), 3);
        assert_eq!(timeline_of(9, 3, &s, MB16), 3);
        assert_eq!(timeline_of(9, 1, &[], MB16), 1);
    }
}
