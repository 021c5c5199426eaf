//! How mux authenticates to Azure Blob Storage: account keys, SAS tokens and Entra ID
//! token credentials.

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use mux_core::{Error, Result};

use crate::redact::{Redacted, redact_sas};

/// How mux authenticates to Azure Blob Storage.
///
/// `Debug` never shows a secret: the account key is replaced by `***`, and so is the
/// signature (`sig=`) of a SAS token.
#[derive(Clone)]
#[non_exhaustive]
pub enum AzureCredential {
    /// The storage account's name and one of its access keys (base64).
    ///
    /// The Azure SDK for Rust does not sign requests with Shared Key, so mux derives an
    /// *account SAS* from the key (HMAC-SHA256, no start time, valid for one hour,
    /// re-signed after 45 minutes on the monotonic clock) and adds it to every request. The key never leaves the
    /// process.
    AccountKey {
        /// The storage account name (`mystorageaccount`).
        account: String,
        /// The account key, base64 as shown by `az storage account keys list`.
        key: String,
    },
    /// A shared access signature: the query string of a SAS URL, without the `?`
    /// (`sv=…&sp=…&sig=…`). It needs read, add, create, write, delete and list
    /// permissions on the container's blobs (and create on the container itself when
    /// `create_container` is set). mux does not renew it: once it expires every request
    /// fails with `PermissionDenied`.
    Sas(String),
    /// Microsoft Entra ID: any token credential, such as `azure_identity`'s
    /// `ManagedIdentityCredential`, `WorkloadIdentityCredential`,
    /// `ClientSecretCredential` or `DeveloperToolsCredential`. The identity needs the
    /// *Storage Blob Data Contributor* role on the container (or its account). Requires
    /// an `https` endpoint.
    Token(Arc<dyn TokenCredential>),
}

impl AzureCredential {
    /// An account name and key.
    pub fn account_key(account: impl Into<String>, key: impl Into<String>) -> AzureCredential {
        AzureCredential::AccountKey {
            account: account.into(),
            key: key.into(),
        }
    }

    /// A SAS token (a leading `?` is removed).
    pub fn sas(token: impl AsRef<str>) -> AzureCredential {
        AzureCredential::Sas(token.as_ref().trim_start_matches('?').to_owned())
    }

    /// An Entra ID token credential.
    pub fn token(credential: Arc<dyn TokenCredential>) -> AzureCredential {
        AzureCredential::Token(credential)
    }

    /// The managed identity of the Azure host (App Service, Functions, VM, AKS with
    /// pod identity); `client_id` selects a user-assigned identity, `None` the
    /// system-assigned one.
    pub fn managed_identity(client_id: Option<&str>) -> Result<AzureCredential> {
        use azure_identity::{
            ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
        };
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_owned())),
            ..Default::default()
        };
        let credential = ManagedIdentityCredential::new(Some(options))
            .map_err(|e| credential_error("managed identity", e))?;
        Ok(AzureCredential::Token(credential))
    }

    /// The signed-in user of the Azure CLI (`az login`) or the Azure Developer CLI
    /// (`azd auth login`), for development.
    pub fn developer_tools() -> Result<AzureCredential> {
        let credential = azure_identity::DeveloperToolsCredential::new(None)
            .map_err(|e| credential_error("developer tools", e))?;
        Ok(AzureCredential::Token(credential))
    }

    /// A chain for code that runs both on Azure and on a developer's machine: workload
    /// identity (when `AZURE_FEDERATED_TOKEN_FILE` is set, as on AKS), then the managed
    /// identity, then the developer tools (Azure CLI, Azure Developer CLI). The first
    /// source that returns a token is used from then on.
    pub fn default_chain() -> Result<AzureCredential> {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            let workload = azure_identity::WorkloadIdentityCredential::new(None)
                .map_err(|e| credential_error("workload identity", e))?;
            sources.push(("workload identity", workload));
        }
        if let AzureCredential::Token(managed) = Self::managed_identity(None)? {
            sources.push(("managed identity", managed));
        }
        if let AzureCredential::Token(developer) = Self::developer_tools()? {
            sources.push(("developer tools", developer));
        }
        Ok(AzureCredential::Token(Arc::new(
            crate::identity::ChainCredential::new(sources),
        )))
    }
}

fn credential_error(what: &str, e: azure_core::Error) -> Error {
    Error::new(
        mux_core::ErrorKind::InvalidInput,
        format!("cannot set up the {what} credential"),
    )
    .with_source(Redacted::of(&e))
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzureCredential::AccountKey { account, .. } => f
                .debug_struct("AccountKey")
                .field("account", account)
                .field("key", &"***")
                .finish(),
            AzureCredential::Sas(token) => f.debug_tuple("Sas").field(&redact_sas(token)).finish(),
            AzureCredential::Token(credential) => f.debug_tuple("Token").field(credential).finish(),
        }
    }
}
