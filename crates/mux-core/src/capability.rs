//! What a backend can do.

/// A backend's declaration of what it supports.
///
/// A plain `Copy + Default` struct: backends write it as a literal with
/// `..Default::default()`, and the coordinator and the conformance suite act on it.
/// Nothing in mux guesses a backend's abilities from its name.
///
/// ```
/// use mux_core::Capability;
/// let cap = Capability { list: true, tags: true, max_value_size: Some(1 << 20), ..Default::default() };
/// assert!(!cap.batch);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capability {
    /// `list` returns keys by prefix in byte order, with cursors.
    pub list: bool,
    /// `put_batch` is native (one round trip or transaction), not a loop of puts.
    pub batch: bool,
    /// The version comparison and the write happen atomically in the store, so
    /// concurrent writers of one key can never let a lower version win.
    pub atomic_conditional_write: bool,
    /// The store keeps older versions (history / time series).
    pub history: bool,
    /// Tags are stored and returned.
    pub tags: bool,
    /// The content type is stored and returned.
    pub content_type: bool,
    /// `purge` hard-removes records (tombstone garbage collection).
    pub purge: bool,
    /// Data survives a restart of the process (and of the store).
    pub durable: bool,
    /// `digest` is computed by the store itself (an aggregate or maintained sums), not
    /// by listing through mux; verifiers then descend by digests instead of listing.
    pub digest: bool,
    /// The largest value accepted, in bytes; `None` means no limit mux knows of.
    pub max_value_size: Option<usize>,
}
