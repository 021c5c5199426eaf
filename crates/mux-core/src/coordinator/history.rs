//! Temporal reads: a key's history and the record as of a time or version, served by
//! the first backend of the key's route that keeps history (`Capability::history`).

use std::sync::Arc;

use super::read::no_answer;
use super::{Inner, ReadOptions, Route, Slot};
use crate::error::{Error, Operation, Result};
use crate::history::{AsOf, HistoryPage, HistoryRequest};
use crate::key::Key;
use crate::record::Record;
use crate::seal::Sealer;

impl Inner {
    /// One page of `request.key`'s history from the route's first answering backend
    /// that keeps history; keys come back as the caller named them.
    pub(crate) async fn history(
        self: &Arc<Self>,
        request: &HistoryRequest,
        options: &ReadOptions,
    ) -> Result<HistoryPage> {
        request.effective_limit()?;
        let key = request.key.clone();
        let (mut page, stored, sealer) = self
            .temporal(&key, options, Operation::History, |slot, stored| {
                let request = HistoryRequest {
                    key: stored,
                    ..request.clone()
                };
                async move {
                    slot.guard(Operation::History, slot.backend.history(&request))
                        .await
                }
            })
            .await?;
        if let Some(sealer) = sealer {
            let mut opened = Vec::with_capacity(page.entries.len());
            for entry in page.entries.drain(..) {
                opened.push(match entry.is_tombstone() {
                    true => entry,
                    false => sealer.open(&stored, entry).await?,
                });
            }
            page.entries = opened;
        }
        for entry in &mut page.entries {
            if entry.key() != &key {
                *entry = entry.clone().with_key(key.clone());
            }
        }
        Ok(page)
    }

    /// The record under `key` as of `at` (tombstones included), from the route's first
    /// answering backend that keeps history.
    pub(crate) async fn get_as_of(
        self: &Arc<Self>,
        key: &Key,
        at: AsOf,
        options: &ReadOptions,
    ) -> Result<Option<Record>> {
        let (record, stored, sealer) = self
            .temporal(
                key,
                options,
                Operation::GetAsOf,
                |slot, stored| async move {
                    slot.guard(Operation::GetAsOf, slot.backend.get_as_of(&stored, at))
                        .await
                },
            )
            .await?;
        let record = crate::seal::open(sealer.as_deref(), &stored, record).await?;
        Ok(record.map(|r| r.with_key(key.clone())))
    }

    /// Calls `call(slot, stored key)` on the history-keeping backends of `key`'s route
    /// in read order (open circuits last) until one answers; returns the answer, the
    /// stored key and the route's sealer (the answer is still sealed).
    async fn temporal<T, F, Fut>(
        self: &Arc<Self>,
        key: &Key,
        options: &ReadOptions,
        op: Operation,
        call: F,
    ) -> Result<(T, Key, Option<Arc<dyn Sealer>>)>
    where
        F: Fn(Arc<Slot>, Key) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.ensure_started();
        let route = self.route_for(key.as_str(), &options.tags, options.tenant.as_ref());
        let stored = match &options.tenant {
            Some(tenant) => tenant.storage_key(key)?,
            None => key.clone(),
        };
        let keepers: Vec<&Arc<Slot>> = self
            .read_order(route)
            .iter()
            .map(|&p| self.slot(route, p))
            .filter(|s| s.backend.info().capability.history)
            .collect();
        if keepers.is_empty() {
            return Err(no_history(route, op));
        }
        let mut errors = Vec::new();
        for slot in keepers {
            match call(slot.clone(), stored.clone()).await {
                Ok(answer) => return Ok((answer, stored, route.sealer.clone())),
                Err(e) => errors.push(e),
            }
        }
        Err(no_answer(route, key, errors).with_operation(op))
    }
}

fn no_history(route: &Route, op: Operation) -> Error {
    let names: Vec<&str> = route.names().iter().map(|(n, _)| &**n).collect();
    Error::unsupported(format!(
        "no backend of {} keeps history (its backends: {}); add one whose capability has \
         `history` (e.g. mux-ssm or mux-influx) to the route",
        route.config.describe(),
        names.join(", ")
    ))
    .with_operation(op)
}
