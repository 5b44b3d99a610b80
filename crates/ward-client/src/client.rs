//! `Client`: one method per API call, returning wire types.

use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::wire::{
    ApplyRequest, ApplyResponse, AuditEntry, AuditList, AuditVerifyResponse, CreatedKey, ErrorBody,
    EventEntry, ExportRequest, GrantDocument, ImageDocument, ImageList, KeyDocument, KeyList,
    KeyRequest, LoadedModelDocument, LoadedModelList, LogEntry, LoginRequest, ModelDocument,
    ModelList, ModelPullRequest, ModelPushRequest, ModelTransferEvent, ProjectDocument,
    ProjectList, PruneResponse, PullEvent, PullRequest, QuotaDocument, QuotaLimits, RegistryLogin,
    RegistryLoginList, SecretDocument, SecretList, SecretValue, SessionDocument, SessionRequest,
    UserDocument, UserList, UserRequest, VolumeDocument, VolumeList, VolumePruneResponse,
    WorkloadDocument, WorkloadList,
};

/// A connection to one Ward daemon.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For `wss://` (exec) to a daemon whose certificate a given CA signed.
    websocket_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    base_url: String,
    token: Option<String>,
    /// `None`: the daemon's choice (the key's own project, or `default`).
    project: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("project", &self.project)
            .finish()
    }
}

#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    /// RFC 3339 time or a duration like `10m` (meaning that long ago).
    pub since: Option<String>,
}

/// The WebSocket of an exec or an attach.
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `url` with the instance and the terminal size of `options`, as a WebSocket URL.
fn with_terminal_options(mut url: String, options: &ExecOptions) -> String {
    if let Some(replica) = options.replica {
        url.push_str(&format!("&replica={replica}"));
    }
    if let (Some(cols), Some(rows)) = (options.cols, options.rows) {
        url.push_str(&format!("&cols={cols}&rows={rows}"));
    }
    url.replacen("http", "ws", 1)
}

#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub tty: bool,
    /// `KEY=VALUE` variables for the command.
    pub env: Vec<String>,
    /// `UID[:GID]` or names from the workload's `/etc/passwd`.
    pub user: Option<String>,
    /// Absolute working directory.
    pub workdir: Option<String>,
    pub replica: Option<u32>,
    pub cols: Option<u16>,
    pub rows: Option<u16>,
}

impl Client {
    /// `base_url` like `http://127.0.0.1:7380`; `token` is the bearer key.
    pub fn new(base_url: &str, token: Option<String>) -> Client {
        // Loading the public root certificates costs every CLI start a few milliseconds;
        // a daemon over plain HTTP needs none.
        let https = base_url.starts_with("https://");
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .tls_built_in_root_certs(https)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Client {
            http,
            websocket_tls: None,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            project: None,
        }
    }

    /// Trusts the certificates in `pem` (besides the public roots), as for a daemon serving
    /// HTTPS with a self-signed certificate.
    pub fn with_ca_certificate(mut self, pem: &[u8]) -> Result<Client, ClientError> {
        let invalid = |reason: String| ClientError::Tls { reason };
        let certificate = reqwest::Certificate::from_pem(pem)
            .map_err(|error| invalid(format!("the CA certificate: {error}")))?;
        self.http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .add_root_certificate(certificate)
            .build()
            .map_err(|error| invalid(root_cause(&error)))?;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            let certificate =
                certificate.map_err(|error| invalid(format!("the CA certificate: {error}")))?;
            roots
                .add(certificate)
                .map_err(|error| invalid(format!("the CA certificate: {error}")))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| invalid(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        self.websocket_tls = Some(std::sync::Arc::new(config));
        Ok(self)
    }

    /// The project every call addresses (default: the key's own project, or `default`).
    pub fn with_project(mut self, project: &str) -> Client {
        self.project = Some(project.to_string());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    pub async fn health(&self) -> Result<(), ClientError> {
        let url = format!("{}/healthz", self.base_url);
        let response = self.send(self.http.get(&url), &url).await?;
        Self::check(response, &url).await.map(|_| ())
    }

    pub async fn list_workloads(&self, all: bool) -> Result<Vec<WorkloadDocument>, ClientError> {
        let path = format!("/api/v1/workloads?all={all}");
        let list: WorkloadList = self.call(Method::GET, &path, None).await?;
        Ok(list.workloads)
    }

    pub async fn get_workload(&self, name: &str) -> Result<WorkloadDocument, ClientError> {
        self.call(Method::GET, &format!("/api/v1/workloads/{name}"), None)
            .await
    }

    /// Creates a workload; with `wait`, answers once it runs or has failed to start.
    pub async fn create_workload(
        &self,
        spec: &serde_json::Value,
        wait: bool,
    ) -> Result<WorkloadDocument, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/workloads?wait={wait}"),
            Some(spec),
        )
        .await
    }

    /// Creates or updates one workload.
    pub async fn put_workload(
        &self,
        name: &str,
        spec: &serde_json::Value,
    ) -> Result<WorkloadDocument, ClientError> {
        self.call(
            Method::PUT,
            &format!("/api/v1/workloads/{name}"),
            Some(spec),
        )
        .await
    }

    /// Applies several workloads, all or nothing.
    pub async fn apply(&self, request: &ApplyRequest) -> Result<ApplyResponse, ClientError> {
        let body = serde_json::to_value(request).map_err(|error| ClientError::Protocol {
            url: self.base_url.clone(),
            reason: error.to_string(),
        })?;
        self.call(Method::POST, "/api/v1/apply", Some(&body)).await
    }

    pub async fn delete_workload(&self, name: &str, force: bool) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(
                Method::DELETE,
                &format!("/api/v1/workloads/{name}?force={force}"),
                None,
            )
            .await?;
        Ok(())
    }

    pub async fn list_images(&self) -> Result<Vec<ImageDocument>, ClientError> {
        let list: ImageList = self.call(Method::GET, "/api/v1/images", None).await?;
        Ok(list.images)
    }

    pub async fn pull_image(
        &self,
        reference: &str,
        plain_http: bool,
    ) -> Result<ImageDocument, ClientError> {
        let body = serde_json::to_value(PullRequest {
            reference: reference.to_string(),
            plain_http,
        })
        .unwrap_or_default();
        self.call(Method::POST, "/api/v1/images/pull", Some(&body))
            .await
    }

    /// Pulls with progress: [`PullEvent`] lines as the daemon sends them, ending with the image
    /// or the error. Dropping the stream cancels the pull.
    pub async fn pull_image_events(
        &self,
        reference: &str,
        plain_http: bool,
    ) -> Result<impl Stream<Item = Result<PullEvent, ClientError>> + use<>, ClientError> {
        let url = self.url("/api/v1/images/pull");
        let builder = self
            .request(Method::POST, &url)
            .header("accept", "application/x-ndjson")
            .json(&PullRequest {
                reference: reference.to_string(),
                plain_http,
            });
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        Ok(ndjson_stream(response, url))
    }

    /// Uploads an archive (`docker save` tar or OCI layout tar, plain or compressed) and
    /// imports its images.
    pub async fn import_image(
        &self,
        archive: impl Into<reqwest::Body>,
        name: Option<&str>,
    ) -> Result<Vec<ImageDocument>, ClientError> {
        let path = match name {
            Some(name) => format!("/api/v1/images/import?name={}", encode_query_value(name)),
            None => "/api/v1/images/import".to_string(),
        };
        let url = self.url(&path);
        let builder = self
            .request(Method::POST, &url)
            .header("content-type", "application/x-tar")
            .body(archive);
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        let list: ImageList = response
            .json()
            .await
            .map_err(|error| ClientError::Protocol {
                url,
                reason: error.to_string(),
            })?;
        Ok(list.images)
    }

    /// The archive of `images` (an OCI layout that is also a `docker save` tar), as it streams.
    pub async fn export_images(
        &self,
        images: &[String],
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, ClientError>> + use<>, ClientError> {
        let url = self.url("/api/v1/images/export");
        let builder = self.request(Method::POST, &url).json(&ExportRequest {
            images: images.to_vec(),
        });
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        Ok(response.bytes_stream().map(move |chunk| {
            chunk.map_err(|error| ClientError::Protocol {
                url: url.clone(),
                reason: format!("the archive stream broke off: {}", root_cause(&error)),
            })
        }))
    }

    /// Keeps a registry login in the daemon, after the registry accepted it.
    pub async fn login(&self, request: &LoginRequest) -> Result<RegistryLogin, ClientError> {
        let body = serde_json::to_value(request).unwrap_or_default();
        self.call(Method::POST, "/api/v1/registries/login", Some(&body))
            .await
    }

    pub async fn logout(&self, registry: &str) -> Result<RegistryLogin, ClientError> {
        let path = format!("/api/v1/registries/{}", encode_query_value(registry));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn registry_logins(&self) -> Result<Vec<RegistryLogin>, ClientError> {
        let list: RegistryLoginList = self.call(Method::GET, "/api/v1/registries", None).await?;
        Ok(list.registries)
    }

    pub async fn get_image(&self, reference: &str) -> Result<ImageDocument, ClientError> {
        let path = format!("/api/v1/images/{}", encode_query_value(reference));
        self.call(Method::GET, &path, None).await
    }

    pub async fn remove_image(
        &self,
        reference: &str,
        force: bool,
    ) -> Result<ImageDocument, ClientError> {
        let path = format!(
            "/api/v1/images/{}?force={force}",
            encode_query_value(reference)
        );
        self.call(Method::DELETE, &path, None).await
    }

    /// Pulls a model with progress: [`ModelTransferEvent`] lines, ending with the model or
    /// the error. Dropping the stream cancels the pull.
    pub async fn pull_model_events(
        &self,
        source: &str,
        name: Option<&str>,
    ) -> Result<impl Stream<Item = Result<ModelTransferEvent, ClientError>> + use<>, ClientError>
    {
        let url = self.url("/api/v1/models/pull");
        let builder = self
            .request(Method::POST, &url)
            .header("accept", "application/x-ndjson")
            .json(&ModelPullRequest {
                source: source.to_string(),
                name: name.map(str::to_string),
            });
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        Ok(ndjson_stream(response, url))
    }

    /// Pushes model `name` to `reference` with progress, as [`Client::pull_model_events`].
    pub async fn push_model_events(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<impl Stream<Item = Result<ModelTransferEvent, ClientError>> + use<>, ClientError>
    {
        let url = self.url(&format!("/api/v1/models/{}/push", encode_query_value(name)));
        let builder = self
            .request(Method::POST, &url)
            .header("accept", "application/x-ndjson")
            .json(&ModelPushRequest {
                reference: reference.to_string(),
            });
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        Ok(ndjson_stream(response, url))
    }

    /// Uploads a model file (GGUF) and names it `name`.
    pub async fn import_model(
        &self,
        file: impl Into<reqwest::Body>,
        name: &str,
    ) -> Result<ModelDocument, ClientError> {
        let url = self.url(&format!(
            "/api/v1/models/import?name={}",
            encode_query_value(name)
        ));
        let builder = self
            .request(Method::POST, &url)
            .header("content-type", "application/octet-stream")
            .body(file);
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Protocol {
                url,
                reason: error.to_string(),
            })
    }

    /// `GET /api/v1/metrics/query` with these parameters (name, workload, start, end, step,
    /// aggregation), as the daemon answers it.
    pub async fn query_metrics(
        &self,
        parameters: &[(&str, String)],
    ) -> Result<serde_json::Value, ClientError> {
        let query: Vec<String> = parameters
            .iter()
            .map(|(key, value)| format!("{key}={}", encode_query_value(value)))
            .collect();
        let path = format!("/api/v1/metrics/query?{}", query.join("&"));
        self.call(Method::GET, &path, None).await
    }

    /// The project's pending and firing alerts.
    pub async fn alerts(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/api/v1/alerts", None).await
    }

    /// The project's silences that have not ended.
    pub async fn silences(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/api/v1/alerts/silences", None)
            .await
    }

    /// Mutes the project's alerts matching every `matchers` label for `duration` (like `2h`).
    pub async fn create_silence(
        &self,
        matchers: &std::collections::BTreeMap<String, String>,
        duration: &str,
        comment: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let body =
            serde_json::json!({ "matchers": matchers, "duration": duration, "comment": comment });
        self.call(Method::POST, "/api/v1/alerts/silences", Some(&body))
            .await
    }

    pub async fn expire_silence(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/api/v1/alerts/silences/{}", encode_query_value(id));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn list_models(&self) -> Result<Vec<ModelDocument>, ClientError> {
        let list: ModelList = self.call(Method::GET, "/api/v1/models", None).await?;
        Ok(list.models)
    }

    pub async fn get_model(&self, name: &str) -> Result<ModelDocument, ClientError> {
        let path = format!("/api/v1/models/{}", encode_query_value(name));
        self.call(Method::GET, &path, None).await
    }

    pub async fn loaded_models(&self) -> Result<Vec<LoadedModelDocument>, ClientError> {
        let list: LoadedModelList = self
            .call(Method::GET, "/api/v1/models/loaded", None)
            .await?;
        Ok(list.models)
    }

    pub async fn load_model(&self, name: &str) -> Result<LoadedModelDocument, ClientError> {
        let path = format!("/api/v1/models/{}/load", encode_query_value(name));
        self.call(Method::POST, &path, None).await
    }

    pub async fn unload_model(&self, name: &str) -> Result<ModelDocument, ClientError> {
        let path = format!("/api/v1/models/{}/unload", encode_query_value(name));
        self.call(Method::POST, &path, None).await
    }

    pub async fn remove_model(
        &self,
        name: &str,
        force: bool,
    ) -> Result<ModelDocument, ClientError> {
        let path = format!("/api/v1/models/{}?force={force}", encode_query_value(name));
        self.call(Method::DELETE, &path, None).await
    }

    /// `POST /v1/chat/completions` with `stream: true` (set here): the chunks as they come,
    /// each a JSON object (a `chat.completion.chunk`, or `{"error": …}`), up to `[DONE]`.
    pub async fn chat_stream(
        &self,
        request: &serde_json::Value,
    ) -> Result<impl Stream<Item = Result<serde_json::Value, ClientError>> + use<>, ClientError>
    {
        let mut request = request.clone();
        request["stream"] = serde_json::Value::Bool(true);
        let url = self.url("/v1/chat/completions");
        let builder = self.request(Method::POST, &url).json(&request);
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        Ok(json_lines(response, url, |line| {
            line.strip_prefix("data:")
                .map(str::trim)
                .filter(|data| *data != "[DONE]")
        }))
    }

    pub async fn prune_images(&self) -> Result<PruneResponse, ClientError> {
        self.call(Method::POST, "/api/v1/images/prune", None).await
    }

    pub async fn create_key(&self, request: &KeyRequest) -> Result<CreatedKey, ClientError> {
        let body = serde_json::to_value(request).unwrap_or_default();
        self.call(Method::POST, "/api/v1/keys", Some(&body)).await
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyDocument>, ClientError> {
        let list: KeyList = self.call(Method::GET, "/api/v1/keys", None).await?;
        Ok(list.keys)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<KeyDocument, ClientError> {
        let path = format!("/api/v1/keys/{}", encode_query_value(id));
        self.call(Method::DELETE, &path, None).await
    }

    /// Audit entries after `after`, at most `limit`.
    pub async fn audit(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, ClientError> {
        let path = format!("/api/v1/audit?after={after}&limit={limit}");
        let list: AuditList = self.call(Method::GET, &path, None).await?;
        Ok(list.entries)
    }

    pub async fn verify_audit(&self) -> Result<AuditVerifyResponse, ClientError> {
        self.call(Method::GET, "/api/v1/audit/verify", None).await
    }

    pub async fn set_secret(
        &self,
        name: &str,
        value: &SecretValue,
    ) -> Result<SecretDocument, ClientError> {
        let path = format!("/api/v1/secrets/{}", encode_query_value(name));
        let body = serde_json::to_value(value).unwrap_or_default();
        self.call(Method::PUT, &path, Some(&body)).await
    }

    pub async fn list_volumes(&self) -> Result<Vec<VolumeDocument>, ClientError> {
        let list: VolumeList = self.call(Method::GET, "/api/v1/volumes", None).await?;
        Ok(list.volumes)
    }

    pub async fn remove_volume(&self, name: &str) -> Result<VolumePruneResponse, ClientError> {
        let path = format!("/api/v1/volumes/{}", encode_query_value(name));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn prune_volumes(&self) -> Result<VolumePruneResponse, ClientError> {
        self.call(Method::POST, "/api/v1/volumes/prune", None).await
    }

    pub async fn list_secrets(&self) -> Result<Vec<SecretDocument>, ClientError> {
        let list: SecretList = self.call(Method::GET, "/api/v1/secrets", None).await?;
        Ok(list.secrets)
    }

    pub async fn secret_value(&self, name: &str) -> Result<SecretValue, ClientError> {
        let path = format!("/api/v1/secrets/{}/value", encode_query_value(name));
        self.call(Method::GET, &path, None).await
    }

    pub async fn remove_secret(&self, name: &str) -> Result<SecretDocument, ClientError> {
        let path = format!("/api/v1/secrets/{}", encode_query_value(name));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn login_user(
        &self,
        request: &SessionRequest,
    ) -> Result<SessionDocument, ClientError> {
        let body = serde_json::to_value(request).unwrap_or_default();
        self.call(Method::POST, "/api/v1/sessions", Some(&body))
            .await
    }

    pub async fn set_user(&self, name: &str, password: &str) -> Result<UserDocument, ClientError> {
        let body = serde_json::to_value(UserRequest {
            name: name.to_string(),
            password: password.to_string(),
        })
        .unwrap_or_default();
        self.call(Method::POST, "/api/v1/users", Some(&body)).await
    }

    pub async fn list_users(&self) -> Result<Vec<UserDocument>, ClientError> {
        let list: UserList = self.call(Method::GET, "/api/v1/users", None).await?;
        Ok(list.users)
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/users/{}", encode_query_value(name));
        let _: serde_json::Value = self.call(Method::DELETE, &path, None).await?;
        Ok(())
    }

    pub async fn grant(
        &self,
        name: &str,
        grant: &GrantDocument,
    ) -> Result<UserDocument, ClientError> {
        let path = format!("/api/v1/users/{}/grants", encode_query_value(name));
        let body = serde_json::to_value(grant).unwrap_or_default();
        self.call(Method::POST, &path, Some(&body)).await
    }

    pub async fn revoke_grant(
        &self,
        name: &str,
        project: Option<&str>,
    ) -> Result<UserDocument, ClientError> {
        let mut path = format!("/api/v1/users/{}/grants", encode_query_value(name));
        if let Some(project) = project {
            path.push_str(&format!("?grant_project={}", encode_query_value(project)));
        }
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn quota(&self) -> Result<QuotaDocument, ClientError> {
        self.call(Method::GET, "/api/v1/quota", None).await
    }

    pub async fn set_quota(&self, limits: &QuotaLimits) -> Result<QuotaDocument, ClientError> {
        let body = serde_json::to_value(limits).unwrap_or_default();
        self.call(Method::PUT, "/api/v1/quota", Some(&body)).await
    }

    pub async fn list_projects(&self) -> Result<Vec<ProjectDocument>, ClientError> {
        let list: ProjectList = self.call(Method::GET, "/api/v1/projects", None).await?;
        Ok(list.projects)
    }

    pub async fn create_project(&self, name: &str) -> Result<ProjectDocument, ClientError> {
        let body = serde_json::json!({ "name": name });
        self.call(Method::POST, "/api/v1/projects", Some(&body))
            .await
    }

    /// `action` is `start`, `stop` or `restart`.
    pub async fn workload_action(
        &self,
        name: &str,
        action: &str,
    ) -> Result<WorkloadDocument, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/workloads/{name}/{action}"),
            None,
        )
        .await
    }

    /// Stops a workload; `timeout` is the seconds between SIGTERM and SIGKILL for this stop.
    pub async fn stop_workload(
        &self,
        name: &str,
        timeout: Option<u64>,
    ) -> Result<WorkloadDocument, ClientError> {
        let query = timeout
            .map(|seconds| format!("?timeout={seconds}"))
            .unwrap_or_default();
        self.call(
            Method::POST,
            &format!("/api/v1/workloads/{name}/stop{query}"),
            None,
        )
        .await
    }

    /// Sends a signal (a name like `HUP`, or a number) to a workload; `None` is SIGKILL.
    pub async fn kill_workload(
        &self,
        name: &str,
        signal: Option<&str>,
    ) -> Result<WorkloadDocument, ClientError> {
        let query = signal
            .map(|signal| format!("?signal={}", encode_query_value(signal)))
            .unwrap_or_default();
        self.call(
            Method::POST,
            &format!("/api/v1/workloads/{name}/kill{query}"),
            None,
        )
        .await
    }

    /// Log entries; with `follow`, the stream stays open and yields new lines as they come.
    pub async fn logs(
        &self,
        name: &str,
        options: &LogOptions,
    ) -> Result<impl Stream<Item = Result<LogEntry, ClientError>> + use<>, ClientError> {
        let mut path = format!("/api/v1/workloads/{name}/logs?follow={}", options.follow);
        if let Some(tail) = options.tail {
            path.push_str(&format!("&tail={tail}"));
        }
        if let Some(since) = &options.since {
            path.push_str(&format!("&since={}", encode_query_value(since)));
        }
        let url = self.url(&path);
        let response = self.send(self.request(Method::GET, &url), &url).await?;
        let response = Self::check(response, &url).await?;
        Ok(ndjson_stream(response, url))
    }

    /// Events after `since` (an event id), then, with `follow`, new ones as they happen.
    pub async fn events(
        &self,
        since: Option<i64>,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<EventEntry, ClientError>> + use<>, ClientError> {
        let mut path = format!("/api/v1/events?follow={follow}");
        if let Some(since) = since {
            path.push_str(&format!("&since={since}"));
        }
        let url = self.url(&path);
        let response = self.send(self.request(Method::GET, &url), &url).await?;
        let response = Self::check(response, &url).await?;
        Ok(sse_stream(response, url))
    }

    /// The URL of the exec WebSocket for `command` in workload `name`.
    pub fn exec_url(&self, name: &str, command: &[String], options: &ExecOptions) -> String {
        let mut url = self.url(&format!(
            "/api/v1/workloads/{name}/exec?tty={}",
            options.tty
        ));
        for argument in command {
            url.push_str(&format!("&command={}", encode_query_value(argument)));
        }
        for variable in &options.env {
            url.push_str(&format!("&env={}", encode_query_value(variable)));
        }
        if let Some(user) = &options.user {
            url.push_str(&format!("&user={}", encode_query_value(user)));
        }
        if let Some(workdir) = &options.workdir {
            url.push_str(&format!("&workdir={}", encode_query_value(workdir)));
        }
        with_terminal_options(url, options)
    }

    /// Opens the exec WebSocket. Binary frames carry a channel byte first:
    /// 0 stdin (client → server), 1 stdout, 2 stderr (server → client).
    pub async fn exec(
        &self,
        name: &str,
        command: &[String],
        options: &ExecOptions,
    ) -> Result<WebSocket, ClientError> {
        self.websocket(self.exec_url(name, command, options)).await
    }

    /// `ws(s)://…/attach`: the terminal of a workload's instance that runs on one.
    pub fn attach_url(&self, name: &str, options: &ExecOptions) -> String {
        let url = self.url(&format!("/api/v1/workloads/{name}/attach?tty=true"));
        with_terminal_options(url, options)
    }

    /// Attaches to the terminal of a workload started with `tty` (`ward attach`); the
    /// connection speaks the exec protocol.
    pub async fn attach(
        &self,
        name: &str,
        options: &ExecOptions,
    ) -> Result<WebSocket, ClientError> {
        self.websocket(self.attach_url(name, options)).await
    }

    async fn websocket(&self, url: String) -> Result<WebSocket, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request =
            url.as_str()
                .into_client_request()
                .map_err(|error| ClientError::WebSocket {
                    url: url.clone(),
                    reason: error.to_string(),
                })?;
        if let Some(token) = &self.token {
            if let Ok(value) = format!("Bearer {token}").parse() {
                request.headers_mut().insert("authorization", value);
            }
        }
        let connector = self
            .websocket_tls
            .clone()
            .map(tokio_tungstenite::Connector::Rustls);
        match tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector).await
        {
            Ok((stream, _)) => Ok(stream),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().unwrap_or_default();
                Err(api_error(status, body))
            }
            Err(error) => Err(ClientError::WebSocket {
                url,
                reason: error.to_string(),
            }),
        }
    }

    /// Any GET returning text (`/metrics`, `/openapi.json`).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let response = self.send(self.request(Method::GET, &url), &url).await?;
        let response = Self::check(response, &url).await?;
        response
            .text()
            .await
            .map_err(|error| ClientError::Protocol {
                url,
                reason: error.to_string(),
            })
    }

    fn url(&self, path: &str) -> String {
        let Some(project) = &self.project else {
            return format!("{}{}", self.base_url, path);
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        format!(
            "{}{}{}project={}",
            self.base_url,
            path,
            separator,
            encode_query_value(project)
        )
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut builder = self.request(method, &url);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = self.send(builder, &url).await?;
        let response = Self::check(response, &url).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ClientError::Protocol {
                url: url.clone(),
                reason: error.to_string(),
            })?;
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Protocol {
            url,
            reason: error.to_string(),
        })
    }

    async fn send(&self, builder: RequestBuilder, url: &str) -> Result<Response, ClientError> {
        builder
            .send()
            .await
            .map_err(|error| ClientError::Unreachable {
                url: url.split('?').next().unwrap_or(url).to_string(),
                reason: root_cause(&error),
            })
    }

    async fn check(response: Response, url: &str) -> Result<Response, ClientError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| ClientError::Protocol {
                url: url.to_string(),
                reason: error.to_string(),
            })?;
        Err(api_error(status, &body))
    }
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => ClientError::Api {
            status,
            code: parsed.error.code,
            message: parsed.error.message,
            field: parsed.error.field,
        },
        Err(_) => ClientError::Api {
            status,
            code: "http_error".to_string(),
            message: format!(
                "the daemon answered HTTP {status}: {}",
                String::from_utf8_lossy(body).trim()
            ),
            field: None,
        },
    }
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Percent-encodes a query value or a path segment (`application/x-www-form-urlencoded`, as
/// the API decodes it).
fn encode_query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Splits a byte stream into lines, yielding each complete line.
fn lines(response: Response) -> impl Stream<Item = Result<String, reqwest::Error>> {
    let bytes = response.bytes_stream();
    futures_util::stream::unfold(
        (bytes, Vec::<u8>::new(), false),
        |(mut bytes, mut buffer, mut done)| async move {
            loop {
                if let Some(position) = buffer.iter().position(|&byte| byte == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=position).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1])
                        .trim_end_matches('\r')
                        .to_string();
                    return Some((Ok(text), (bytes, buffer, done)));
                }
                if done {
                    if buffer.is_empty() {
                        return None;
                    }
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    buffer.clear();
                    return Some((Ok(text), (bytes, buffer, done)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(error)) => return Some((Err(error), (bytes, buffer, true))),
                    None => done = true,
                }
            }
        },
    )
}

/// Newline-delimited JSON: every non-empty line is one value.
fn ndjson_stream<T: DeserializeOwned>(
    response: Response,
    url: String,
) -> impl Stream<Item = Result<T, ClientError>> {
    json_lines(response, url, |line| {
        Some(line).filter(|line| !line.trim().is_empty())
    })
}

/// Server-Sent Events: the `data:` line of each event is one JSON value.
fn sse_stream<T: DeserializeOwned>(
    response: Response,
    url: String,
) -> impl Stream<Item = Result<T, ClientError>> {
    json_lines(response, url, |line| line.strip_prefix("data:"))
}

/// Parses the JSON that `payload` finds in each line of the body; other lines are skipped.
fn json_lines<T: DeserializeOwned>(
    response: Response,
    url: String,
    payload: fn(&str) -> Option<&str>,
) -> impl Stream<Item = Result<T, ClientError>> {
    lines(response)
        .map(move |line| {
            let protocol_error = |reason: String| ClientError::Protocol {
                url: url.clone(),
                reason,
            };
            let line = line.map_err(|error| protocol_error(error.to_string()))?;
            payload(&line)
                .map(|json| {
                    serde_json::from_str(json.trim())
                        .map_err(|error| protocol_error(error.to_string()))
                })
                .transpose()
        })
        .try_filter_map(|value| futures_util::future::ready(Ok(value)))
}
