//! Cases, their outcomes, and the run: filtering by section, one line per
//! case, a summary, JSON for machines, and the exit status.

use std::fmt::Write as _;

/// How strong the rule a case checks is (spec §1: RFC 2119 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Must,
    Should,
}

impl Level {
    /// `MUST` or `SHOULD`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Must => "MUST",
            Self::Should => "SHOULD",
        }
    }
}

/// A case's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail { expected: String, got: String },
    Skip(String),
}

/// A step of a case: `Err` ends it with a failure or a skip.
pub type Step<T> = Result<T, Outcome>;

pub fn fail(expected: impl Into<String>, got: impl Into<String>) -> Outcome {
    Outcome::Fail {
        expected: expected.into(),
        got: got.into(),
    }
}

pub fn skip(why: impl Into<String>) -> Outcome {
    Outcome::Skip(why.into())
}

/// How a case checks its rule against `T`.
pub type Check<T> = Box<dyn Fn(&T) -> Step<()>>;

/// One rule checked: the section that states it, how strong it is, a
/// sentence, and how to check it against `T` (the endpoint's address, or
/// the client connections that a listener accepts).
pub struct Case<T: ?Sized> {
    pub section: String,
    pub level: Level,
    pub title: String,
    pub run: Check<T>,
}

impl<T: ?Sized> std::fmt::Debug for Case<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "§{} {} {}", self.section, self.level.word(), self.title)
    }
}

impl<T: ?Sized> Case<T> {
    pub fn new(
        section: &str,
        level: Level,
        title: impl Into<String>,
        run: impl Fn(&T) -> Step<()> + 'static,
    ) -> Self {
        Self {
            section: section.to_owned(),
            level,
            title: title.into(),
            run: Box::new(run),
        }
    }
}

/// Which sections to run: `--only` and `--skip`, each a list of sections;
/// a section covers its subsections (`5.4` covers `5.4.2.1`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

impl Filter {
    fn covers(prefix: &str, section: &str) -> bool {
        let prefix = prefix.trim_start_matches('§');
        section == prefix || section.starts_with(&format!("{prefix}."))
    }

    pub fn admits(&self, section: &str) -> bool {
        let wanted = self.only.is_empty() || self.only.iter().any(|p| Self::covers(p, section));
        wanted && !self.skip.iter().any(|p| Self::covers(p, section))
    }
}

/// Writes to stdout; a closed stdout (a pager quit early) is not an error.
pub fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A case's record in the report.
#[derive(Debug, Clone)]
pub struct Record {
    pub section: String,
    pub level: Level,
    pub title: String,
    pub outcome: Outcome,
}

/// Everything a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub records: Vec<Record>,
}

impl Report {
    /// Runs every admitted case against `target`, printing each line as it
    /// ends when `live` is set.
    pub fn run<T: ?Sized>(cases: &[Case<T>], target: &T, filter: &Filter, live: bool) -> Self {
        let mut report = Self::default();
        for case in cases.iter().filter(|case| filter.admits(&case.section)) {
            let outcome = match (case.run)(target) {
                Ok(()) => Outcome::Pass,
                Err(outcome) => outcome,
            };
            let record = Record {
                section: case.section.clone(),
                level: case.level,
                title: case.title.clone(),
                outcome,
            };
            if live {
                say(&record.line());
            }
            report.records.push(record);
        }
        report
    }

    /// The cases `filter` admits, a line each (section, strength, sentence),
    /// without running them.
    pub fn list<T: ?Sized>(cases: &[Case<T>], filter: &Filter) -> String {
        cases
            .iter()
            .filter(|case| filter.admits(&case.section))
            .map(|case| {
                format!(
                    "§{:<8} {:<6}  {}\n",
                    case.section,
                    case.level.word(),
                    case.title
                )
            })
            .collect()
    }

    fn count(&self, wanted: impl Fn(&Record) -> bool) -> usize {
        self.records.iter().filter(|record| wanted(record)).count()
    }

    /// Failed cases of `level`.
    pub fn failures(&self, level: Level) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|r| r.level == level && matches!(r.outcome, Outcome::Fail { .. }))
            .collect()
    }

    pub fn summary(&self) -> String {
        let passed = self.count(|r| r.outcome == Outcome::Pass);
        let skipped = self.count(|r| matches!(r.outcome, Outcome::Skip(_)));
        format!(
            "{} cases: {passed} passed, {} failed (MUST), {} failed (SHOULD), {skipped} skipped\n",
            self.records.len(),
            self.failures(Level::Must).len(),
            self.failures(Level::Should).len(),
        )
    }

    /// 0 unless a MUST failed.
    pub fn exit_status(&self) -> i32 {
        i32::from(!self.failures(Level::Must).is_empty())
    }

    pub fn json(&self) -> serde_json::Value {
        let cases: Vec<serde_json::Value> = self
            .records
            .iter()
            .map(|record| {
                let (result, detail) = match &record.outcome {
                    Outcome::Pass => ("pass", serde_json::json!({})),
                    Outcome::Fail { expected, got } => (
                        "fail",
                        serde_json::json!({ "expected": expected, "got": got }),
                    ),
                    Outcome::Skip(why) => ("skip", serde_json::json!({ "reason": why })),
                };
                let mut value = serde_json::json!({
                    "section": record.section,
                    "level": record.level.word(),
                    "title": record.title,
                    "result": result,
                });
                if let (Some(object), Some(extra)) = (value.as_object_mut(), detail.as_object()) {
                    object.extend(extra.clone());
                }
                value
            })
            .collect();
        serde_json::json!({
            "cases": cases,
            "passed": self.count(|r| r.outcome == Outcome::Pass),
            "failed_must": self.failures(Level::Must).len(),
            "failed_should": self.failures(Level::Should).len(),
            "skipped": self.count(|r| matches!(r.outcome, Outcome::Skip(_))),
        })
    }
}

impl Record {
    /// The case's line (two more on failure: what was expected, what came).
    pub fn line(&self) -> String {
        let word = match self.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail { .. } => "FAIL",
            Outcome::Skip(_) => "SKIP",
        };
        let mut line = format!(
            "{word}  §{:<8} {:<6}  {}\n",
            self.section,
            self.level.word(),
            self.title
        );
        match &self.outcome {
            Outcome::Pass => {}
            Outcome::Fail { expected, got } => {
                let _ = writeln!(line, "      expected: {expected}");
                let _ = writeln!(line, "      got:      {got}");
            }
            Outcome::Skip(why) => {
                let _ = writeln!(line, "      ({why})");
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_covers_its_subsections_only() {
        let filter = Filter {
            only: vec!["5.4".into()],
            skip: vec!["5.4.2.4".into()],
        };
        assert!(filter.admits("5.4"));
        assert!(filter.admits("5.4.2.1"));
        assert!(!filter.admits("5.41"));
        assert!(!filter.admits("5.4.2.4"));
        assert!(!filter.admits("6.1"));
    }

    #[test]
    fn only_a_must_failure_fails_the_run() {
        let cases: Vec<Case<()>> = vec![
            Case::new("1", Level::Should, "should", |_| Err(fail("a", "b"))),
            Case::new("2", Level::Must, "must", |_| Ok(())),
        ];
        let report = Report::run(&cases, &(), &Filter::default(), false);
        assert_eq!(report.exit_status(), 0);
        let cases: Vec<Case<()>> =
            vec![Case::new("2", Level::Must, "must", |_| Err(fail("a", "b")))];
        let report = Report::run(&cases, &(), &Filter::default(), false);
        assert_eq!(report.exit_status(), 1);
        assert_eq!(report.json()["failed_must"], 1);
    }

    #[test]
    fn a_listing_names_each_admitted_case_once() {
        let cases: Vec<Case<()>> = vec![
            Case::new("5.5", Level::Must, "answers PING", |_| Ok(())),
            Case::new("6.3", Level::Should, "other", |_| Ok(())),
        ];
        let filter = Filter {
            only: vec!["5".into()],
            skip: Vec::new(),
        };
        assert_eq!(
            Report::list(&cases, &filter),
            "§5.5      MUST    answers PING\n"
        );
    }
}
