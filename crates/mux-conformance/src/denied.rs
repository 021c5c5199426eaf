//! The denied mode: a backend whose credentials the store refuses must fail every
//! operation with a permanent `PermissionDenied` naming it — never a temporary error
//! (a coordinator would retry it forever and hold hints for it), never an answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use mux_core::{Backend, Error, ErrorKind, Key, ListRequest, Prefix, Record, Result, Version};

use crate::{CaseOutcome, CaseReport, Report};

/// Checks one refusal: permanent, `PermissionDenied`, naming `name`.
fn refused(what: &str, name: Option<&str>, e: &Error) -> std::result::Result<(), String> {
    if e.is_temporary() {
        return Err(format!(
            "{what} with refused credentials failed with a temporary error ({e}): it must be \
             permanent, or it is retried forever"
        ));
    }
    if e.kind() != ErrorKind::PermissionDenied {
        return Err(format!(
            "{what} with refused credentials failed as {} ({e}), not permission_denied",
            e.kind().as_str()
        ));
    }
    if let Some(name) = name
        && e.backend() != Some(name)
    {
        return Err(format!(
            "{what}: the error does not name backend {name}: {e}"
        ));
    }
    Ok(())
}

async fn operations(backend: &dyn Backend) -> std::result::Result<(), String> {
    let name = backend.info().name.to_string();
    let key = Key::new("mux-conformance/denied/k").map_err(|e| e.to_string())?;
    let record = Record::new(key.clone(), "v", Version::new(1, 0, 1));
    let check = |what: &str, result: Result<String>| match result {
        Ok(answer) => Err(format!(
            "{what} with refused credentials answered {answer} instead of failing"
        )),
        Err(e) => refused(what, Some(&name), &e),
    };
    check("put", backend.put(&record).await.map(|o| format!("{o:?}")))?;
    check("get", backend.get(&key).await.map(|r| format!("{r:?}")))?;
    check(
        "delete",
        backend
            .delete(&key, Version::new(2, 0, 1))
            .await
            .map(|o| format!("{o:?}")),
    )?;
    if backend.info().capability.list {
        let prefix = Prefix::new("mux-conformance/denied").map_err(|e| e.to_string())?;
        check(
            "list",
            backend
                .list(&ListRequest::new(prefix))
                .await
                .map(|p| format!("{} entries", p.entries.len())),
        )?;
    }
    Ok(())
}

/// Runs the one denied case, `denied_is_permanent`, against the backend `open` makes
/// with credentials the store refuses. Opening may itself fail: then that error is
/// checked (permanent `PermissionDenied`); otherwise put, get, delete and (with
/// `list`) list must each fail so.
pub async fn run_denied<F, Fut>(open: F) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Backend>>>,
{
    let started = Instant::now();
    let (backend, result) = match open().await {
        Err(e) => (String::new(), refused("opening the backend", None, &e)),
        Ok(b) => (b.info().name.to_string(), operations(&*b).await),
    };
    Report {
        backend,
        cases: vec![CaseReport {
            name: "denied_is_permanent",
            outcome: match result {
                Ok(()) => CaseOutcome::Passed,
                Err(why) => CaseOutcome::Failed(why),
            },
            elapsed: started.elapsed(),
        }],
    }
}
