//! `mux audit`, `mux audit verify` and `mux tenant erase` (the compliance commands).

use crate::error::CliError;
use crate::{api, output};

/// `mux audit [verify]`.
pub(crate) async fn run(
    api: &api::Api,
    verify: bool,
    filters: &[(&str, Option<String>)],
    json: bool,
) -> Result<(), CliError> {
    let answer = if verify {
        api.audit_verify().await?
    } else {
        let given: Vec<(&str, &str)> = filters
            .iter()
            .filter_map(|(k, v)| Some((*k, v.as_deref()?)))
            .collect();
        api.audit(&given).await?
    };
    if json {
        let text = serde_json::to_string_pretty(&answer)
            .map_err(|e| CliError::Failed(format!("cannot print the answer: {e}")))?;
        output::line(text)?;
    }
    if verify {
        let problems: Vec<&str> = answer["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect();
        if !json {
            output::line(format!(
                "audit verify: {} events on {} nodes, {}",
                answer["events"].as_u64().unwrap_or(0),
                answer["nodes"].as_array().map_or(0, Vec::len),
                if problems.is_empty() {
                    "every chain is whole"
                } else {
                    "BROKEN"
                }
            ))?;
        }
        if !problems.is_empty() {
            return Err(CliError::Check(problems.join("\n")));
        }
        return Ok(());
    }
    if !json {
        for e in answer["events"].as_array().into_iter().flatten() {
            let s = |f: &str| e[f].as_str().unwrap_or("-").to_owned();
            output::line(format!(
                "{}\t{}#{}\t{}\t{}\t{}\t{}\t{}",
                e["time_ms"].as_u64().unwrap_or(0),
                e["node"].as_u64().unwrap_or(0),
                e["seq"].as_u64().unwrap_or(0),
                s("actor"),
                s("action"),
                s("key"),
                s("version"),
                s("outcome")
            ))?;
        }
    }
    Ok(())
}

/// `mux tenant erase <tenant>`.
pub(crate) async fn erase(api: &api::Api, tenant: &str, json: bool) -> Result<(), CliError> {
    let report = api.erase_tenant(tenant).await?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Failed(format!("cannot print the report: {e}")))?;
        output::line(text)?;
    } else {
        output::line(format!(
            "tenant {tenant} erased{}: {} dead letters and {} owed writes dropped",
            if report["complete"] == true {
                ""
            } else {
                " INCOMPLETELY"
            },
            report["dead_letters"].as_u64().unwrap_or(0),
            report["owed_writes"].as_u64().unwrap_or(0)
        ))?;
        for s in report["stores"].as_array().into_iter().flatten() {
            output::line(format!(
                "  {}\t{} purged{}",
                s["backend"].as_str().unwrap_or("?"),
                s["purged"].as_u64().unwrap_or(0),
                s["error"]
                    .as_str()
                    .map(|e| format!("\terror: {e}"))
                    .unwrap_or_default()
            ))?;
        }
    }
    if report["complete"] != true {
        return Err(CliError::Check(format!(
            "tenant {tenant} is not erased from every store: run mux tenant erase {tenant} again"
        )));
    }
    Ok(())
}
