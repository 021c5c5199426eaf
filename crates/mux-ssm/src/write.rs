//! Writes: read, compare, write — and put back a newer version that a racing write
//! displaced.
//!
//! Parameter Store has no conditional write. `put` reads the current version
//! (`DescribeParameters`: SSM's version number and mux's metadata), returns
//! `Superseded` when it is at least as new, and otherwise writes (`PutParameter` with
//! `Overwrite`). Between that read and that write another writer may get in. SSM
//! numbers a parameter's versions 1, 2, 3, ..., and `PutParameter` answers with the
//! number it gave, so a writer can tell afterwards whether anything landed in between:
//! it did exactly when the number is not one more than the number it read. Then the
//! writer reads the history, and if a version in between carries a higher mux version
//! than its own, writes that version again (the same value and description) so the
//! highest version is current again, and checks that write the same way.
//!
//! What stays open (see the README): between the displacing write and the repair,
//! readers see the lower version; a writer that dies in that window leaves it there
//! until read repair from another replica (`Quorum`/`All` reads) or a newer write
//! replaces it; and the displaced write's version stays in the parameter's history.

use mux_core::{Error, ErrorKind, PutOutcome, Record, Result, Version};

use crate::core::SsmCore;
use crate::layout::{Encoded, describe};

/// How many repair writes one put makes at most before giving up with a temporary
/// `Conflict` (each round needs yet another racing write to land in its window).
const MAX_REPAIRS: usize = 16;

impl SsmCore {
    /// The conditional write of `record` (already encoded, its name checked).
    pub(crate) async fn put_encoded(
        &self,
        record: &Record,
        name: &str,
        encoded: &Encoded,
    ) -> Result<PutOutcome> {
        let head = self.head(name).await?;
        if let Some(head) = &head {
            let stored = head.described.meta.version;
            if stored >= record.version() {
                return Ok(PutOutcome::Superseded { stored });
            }
        }
        let base = head.map_or(0, |h| h.ssm_version);
        let written = self
            .put_parameter(name, &encoded.value, &encoded.description)
            .await?;
        self.settle(name, record.version(), base, written).await?;
        // The record was stored as a version of the parameter (and stays in its
        // history), even when a newer version it displaced was put back on top.
        Ok(PutOutcome::Applied)
    }

    /// After writing mux version `ours` as SSM version `written` over SSM version
    /// `base` (what the compare read): puts back the highest mux version among the
    /// versions that landed in between when it is higher than `ours`, and checks that
    /// write the same way.
    async fn settle(
        &self,
        name: &str,
        mut ours: Version,
        mut base: i64,
        mut written: i64,
    ) -> Result<()> {
        for _ in 0..MAX_REPAIRS {
            if written <= base {
                // Purged and created again since the read: every earlier version of
                // the new parameter landed after the read.
                base = 0;
            }
            if written == base + 1 {
                return Ok(());
            }
            let history = self.history(name).await?;
            let displaced = history
                .into_iter()
                .filter(|p| p.ssm_version > base && p.ssm_version < written)
                .filter_map(|p| {
                    // Versions that are not mux's (or damaged) have no say.
                    let d = describe(p.description.as_deref(), name).ok()??;
                    Some((d.meta.version, p))
                })
                .max_by_key(|(v, _)| *v);
            let Some((version, past)) = displaced.filter(|(v, _)| *v > ours) else {
                return Ok(());
            };
            tracing::debug!(
                name,
                displaced = %version,
                by = %ours,
                "a racing write displaced a newer version; putting it back"
            );
            let description = past.description.unwrap_or_default();
            let again = self.put_parameter(name, &past.value, &description).await?;
            (ours, base, written) = (version, written, again);
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "parameter {name}: racing writes kept displacing the newest version \
                 ({MAX_REPAIRS} repairs); retry the write"
            ),
        )
        .temporary())
    }
}
