//! The outcome of a conformance run.

use std::fmt;
use std::time::Duration;

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// The backend kept the contract.
    Passed,
    /// The backend broke the contract; the text says how.
    Failed(String),
    /// Ruled out by the backend's capability; the text names it.
    Skipped(String),
}

/// One case's name, outcome and duration.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name (the function name in [`crate::cases`]).
    pub name: &'static str,
    /// How it ended.
    pub outcome: CaseOutcome,
    /// How long it took, cleanup included.
    pub elapsed: Duration,
}

/// The outcome of every case of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The name of the backend under test.
    pub backend: String,
    /// One entry per case, in the order they ran.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Passed))
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Failed(_)))
    }

    /// How many cases were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Skipped(_)))
    }

    /// Whether no case failed (skips allowed).
    pub fn all_passed(&self) -> bool {
        self.failed() == 0 && !self.cases.is_empty()
    }

    /// The outcome of the case called `name`.
    pub fn outcome(&self, name: &str) -> Option<&CaseOutcome> {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }

    /// The skipped cases whose reason names none of the capabilities in `undeclared`.
    ///
    /// An adapter's test lists the capabilities its store lacks (for example
    /// `&["history"]`) and asserts this is empty: a case skipped for any other reason,
    /// or a capability it claims to lack that it now has, is caught rather than
    /// counted away.
    pub fn skips_beyond(&self, undeclared: &[&str]) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|c| match &c.outcome {
                CaseOutcome::Skipped(why) => !undeclared
                    .iter()
                    .any(|cap| why.contains(&format!("`{cap}`"))),
                _ => false,
            })
            .map(|c| c.name)
            .collect()
    }

    /// The names of the failed cases.
    pub fn failures(&self) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, CaseOutcome::Failed(_)))
            .map(|c| c.name)
            .collect()
    }

    fn count(&self, f: impl Fn(&CaseOutcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }
}

impl fmt::Display for Report {
    /// One line per case, then `N passed, M failed, K skipped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            let ms = c.elapsed.as_secs_f64() * 1e3;
            match &c.outcome {
                CaseOutcome::Passed => writeln!(f, "  pass  {:<34} {ms:>8.1} ms", c.name)?,
                CaseOutcome::Failed(why) => {
                    writeln!(f, "  FAIL  {:<34} {ms:>8.1} ms  {why}", c.name)?
                }
                CaseOutcome::Skipped(why) => {
                    writeln!(f, "  skip  {:<34} {ms:>8.1} ms  {why}", c.name)?
                }
            }
        }
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}
