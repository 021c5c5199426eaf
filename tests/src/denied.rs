//! The conformance denied mode for mux's own backends: the stores that check
//! credentials here (PostgreSQL, MariaDB, Azurite), each opened with credentials it
//! refuses. The local moto, Redis and InfluxDB check none, so they have no such mode.

use mux::BackendSpec;

use crate::faults::server_of;
use crate::spec;

/// `name`'s spec with credentials its store refuses, or why there is none here.
pub fn denied_spec(name: &str) -> Result<BackendSpec, String> {
    let none = || {
        let why = match name {
            "memory" | "fs" | "redb" | "mux" => {
                format!("{name} runs in process, without credentials")
            }
            _ => format!("the local {name} server checks no credentials"),
        };
        format!(
            "{why}, so none can be refused (the denied mode runs for postgres, mysql and azure)"
        )
    };
    let spec = spec(name, std::path::Path::new(".")).ok_or_else(none)?;
    let (field, server) = server_of(&spec).ok_or_else(none)?;
    let refused = match name {
        "postgres" => format!("postgres://mux_conformance_denied:wrong@{server}/postgres"),
        "mysql" => format!("mysql://mux_conformance_denied:wrong@{server}/test"),
        "azure" => {
            let current = spec.fields[field].as_str().unwrap_or_default();
            // Another well-formed key (64 zero bytes) for the same account.
            let wrong = format!("AccountKey={};", "A".repeat(86) + "==");
            current
                .split(';')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    if part.starts_with("AccountKey=") {
                        wrong.trim_end_matches(';').to_owned()
                    } else {
                        part.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(";")
                + ";"
        }
        _ => return Err(none()),
    };
    Ok(spec.with(field, refused))
}
