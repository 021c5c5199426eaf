//! The denied mode can fail: a refusal must be a permanent `PermissionDenied` naming
//! the backend, for every operation and at open.

use std::sync::Arc;

use async_trait::async_trait;
use mux_conformance::{CaseOutcome, Report, run_denied};
use mux_core::{
    Backend, BackendInfo, Capability, Error, ErrorKind, Key, ListPage, ListRequest, PutOutcome,
    Record, Result, Version,
};

/// How a backend with refused credentials answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    /// A permanent `PermissionDenied` naming the backend (right).
    Denied,
    /// A temporary `Unavailable` (retried forever by a coordinator).
    Temporary,
    /// A permanent error of another kind.
    Internal,
    /// `get` answers "missing" instead of failing.
    MissingOnGet,
}

#[derive(Debug)]
struct Refusing {
    info: BackendInfo,
    answer: Answer,
}

impl Refusing {
    fn answering(answer: Answer) -> Arc<dyn Backend> {
        let capability = Capability {
            list: true,
            ..Default::default()
        };
        Arc::new(Refusing {
            info: BackendInfo::new("refusing", "test", capability),
            answer,
        })
    }

    fn refuse<T>(&self) -> Result<T> {
        let e = match self.answer {
            Answer::Denied | Answer::MissingOnGet => {
                Error::new(ErrorKind::PermissionDenied, "login refused")
            }
            Answer::Temporary => Error::new(ErrorKind::Unavailable, "login refused"),
            Answer::Internal => Error::new(ErrorKind::Internal, "login refused"),
        };
        Err(e.with_backend("refusing"))
    }
}

#[async_trait]
impl Backend for Refusing {
    fn info(&self) -> &BackendInfo {
        &self.info
    }
    async fn put(&self, _: &Record) -> Result<PutOutcome> {
        self.refuse()
    }
    async fn get(&self, _: &Key) -> Result<Option<Record>> {
        match self.answer {
            Answer::MissingOnGet => Ok(None),
            _ => self.refuse(),
        }
    }
    async fn list(&self, _: &ListRequest) -> Result<ListPage> {
        self.refuse()
    }
    async fn delete(&self, _: &Key, _: Version) -> Result<PutOutcome> {
        self.refuse()
    }
}

async fn report(answer: Answer) -> Report {
    run_denied(|| async move { Ok(Refusing::answering(answer)) }).await
}

fn failure(report: &Report) -> String {
    match report.outcome("denied_is_permanent") {
        Some(CaseOutcome::Failed(why)) => why.clone(),
        other => panic!("expected a failure, got {other:?}: {report}"),
    }
}

#[tokio::test]
async fn a_permanent_permission_denied_passes() {
    let report = report(Answer::Denied).await;
    assert!(report.all_passed(), "{report}");
}

#[tokio::test]
async fn catches_a_refusal_marked_temporary() {
    assert!(failure(&report(Answer::Temporary).await).contains("temporary"));
}

#[tokio::test]
async fn catches_a_refusal_of_another_kind() {
    assert!(failure(&report(Answer::Internal).await).contains("not permission_denied"));
}

#[tokio::test]
async fn catches_a_refused_read_answered_as_missing() {
    assert!(failure(&report(Answer::MissingOnGet).await).contains("answered None"));
}

#[tokio::test]
async fn a_refusal_at_open_is_checked_too() {
    let denied = run_denied(|| async {
        Err::<Arc<dyn Backend>, _>(Error::new(ErrorKind::PermissionDenied, "login refused"))
    })
    .await;
    assert!(denied.all_passed(), "{denied}");
    let temporary = run_denied(|| async {
        Err::<Arc<dyn Backend>, _>(Error::new(ErrorKind::Unavailable, "login refused"))
    })
    .await;
    assert!(failure(&temporary).contains("temporary"));
}
