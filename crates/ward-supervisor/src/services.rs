//! The engine's side of [`ward_core::services`]: each service answers through its own methods,
//! and its errors become the vocabulary's [`Error`] here, once. Internal details (host paths,
//! SQL, the OCI runtime's words) go to the log, never to the caller.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::broadcast;
use ward_core::records::{AuditRecord, AuditVerification, ImageRecord};
use ward_core::services::{Images, InstanceLines, Keys, Models, Secrets, Users, Workloads};
use ward_core::session::{ExecRequest, ExecSession, Signal};
use ward_core::view::{
    ApplyOutcome, Grant, ImageView, KeyView, LogFollow, ModelView, NewKey, PruneReport,
    PullProgress, Quota, QuotaUsage, SecretInfo, Session, UserView, VolumeView, WorkloadView,
};
use ward_core::{Error, ErrorKind};
use ward_spec::WorkloadSpec;

use crate::access::{AccessError, AccessService, Principal};
use crate::events::{Event, EventKind};
use crate::gate::Admission;
use crate::images::{ImageError, ImageErrorKind, ImageService, StoredImage};
use crate::inference::{Inference, InferenceError};
use crate::models::{ModelError, ModelService};
use crate::secrets::{SecretError, SecretService};
use crate::users::UserService;
use crate::{Supervisor, SupervisorError};

impl From<SupervisorError> for Error {
    fn from(error: SupervisorError) -> Error {
        let message = error.to_string();
        let (kind, field) = match &error {
            SupervisorError::NotFound { .. } | SupervisorError::VolumeNotFound { .. } => {
                (ErrorKind::NotFound, None)
            }
            SupervisorError::UnknownProject { .. } => (ErrorKind::NotFound, Some("project".into())),
            SupervisorError::AlreadyExists { .. } => (ErrorKind::Conflict, Some("name".into())),
            SupervisorError::VolumeInUse { .. }
            | SupervisorError::Conflict { .. }
            | SupervisorError::NotRunning { .. } => (ErrorKind::Conflict, None),
            SupervisorError::Invalid { field, .. } => (ErrorKind::InvalidSpec, Some(field.clone())),
            SupervisorError::Spec(spec_error) => (
                ErrorKind::InvalidSpec,
                Some(spec_error.field().to_string()).filter(|field| !field.is_empty()),
            ),
            SupervisorError::ShuttingDown => (ErrorKind::Unavailable, None),
            SupervisorError::Forbidden { .. } => (ErrorKind::Forbidden, None),
            SupervisorError::QuotaExceeded { quota, .. } => {
                (ErrorKind::QuotaExceeded, Some(format!("quota.{quota}")))
            }
            SupervisorError::Store(store_error) => return store_failure(store_error),
            SupervisorError::Runtime(_) | SupervisorError::Metrics(_) => {
                return Error::internal(&error)
            }
            SupervisorError::Core(core_error) => return core_error.clone(),
        };
        Error {
            kind,
            message,
            field,
        }
    }
}

/// A store failure: a full disk is the caller's to know about (with the space left); anything
/// else is internal.
fn store_failure(error: &ward_store::StoreError) -> Error {
    match error {
        ward_store::StoreError::DiskFull { .. } => {
            Error::new(ErrorKind::InsufficientStorage, error.to_string())
        }
        _ => Error::internal(error),
    }
}

impl From<ImageError> for Error {
    fn from(error: ImageError) -> Error {
        if let ImageError::Store(store_error) = &error {
            return store_failure(store_error);
        }
        match error.kind() {
            ImageErrorKind::Invalid => Error::invalid(error.to_string()),
            ImageErrorKind::NotFound => Error::not_found(error.to_string()),
            ImageErrorKind::InUse => Error::new(ErrorKind::Conflict, error.to_string()),
            ImageErrorKind::Upstream => Error::new(ErrorKind::Upstream, error.to_string()),
            ImageErrorKind::Internal => Error::internal(&error),
        }
    }
}

impl From<ModelError> for Error {
    fn from(error: ModelError) -> Error {
        match &error {
            ModelError::Invalid(_) => Error::invalid(error.to_string()),
            ModelError::NotFound { .. } => Error::not_found(error.to_string()),
            ModelError::Loaded { .. } => Error::new(ErrorKind::Conflict, error.to_string()),
            ModelError::Store(store_error) => store_failure(store_error),
            ModelError::Io(_) => Error::internal(&error),
            ModelError::Upstream(_) => Error::new(ErrorKind::Upstream, error.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl ward_core::services::ModelTransfers for crate::model_transfer::ModelTransfers {
    async fn pull(
        &self,
        project: &str,
        source: &str,
        name: Option<&str>,
        progress: &(dyn Fn(ward_core::view::PullProgress) + Send + Sync),
        admission: Option<&Admission>,
    ) -> Result<ward_core::view::ModelView, Error> {
        Ok(crate::model_transfer::ModelTransfers::pull(
            self, project, source, name, progress, admission,
        )
        .await?)
    }

    async fn push(
        &self,
        project: &str,
        name: &str,
        reference: &str,
        progress: &(dyn Fn(ward_core::view::PullProgress) + Send + Sync),
    ) -> Result<String, Error> {
        Ok(
            crate::model_transfer::ModelTransfers::push(self, project, name, reference, progress)
                .await?,
        )
    }
}

impl From<InferenceError> for Error {
    fn from(error: InferenceError) -> Error {
        match error {
            InferenceError::Model(model_error) => model_error.into(),
            InferenceError::Quota(supervisor_error) => supervisor_error.into(),
            InferenceError::Refused(refusal) => refused(refusal),
            busy @ (InferenceError::Busy { .. } | InferenceError::AllBusy { .. }) => {
                Error::new(ErrorKind::Busy, busy.to_string())
            }
            unavailable @ InferenceError::Unavailable { .. } => {
                Error::new(ErrorKind::Unavailable, unavailable.to_string())
            }
        }
    }
}

pub(crate) fn refused(refusal: ward_model::runner::Refusal) -> Error {
    use ward_model::runner::Refusal;
    match refusal {
        too_long @ Refusal::PromptTooLong { .. } => {
            Error::invalid(too_long.to_string()).with_field("messages")
        }
        too_long @ Refusal::InputTooLong { .. } => {
            Error::invalid(too_long.to_string()).with_field("input")
        }
        Refusal::Invalid(message) => Error::invalid(message),
        Refusal::RunnerStopped(message) => Error::new(ErrorKind::Unavailable, message),
    }
}

impl From<SecretError> for Error {
    fn from(error: SecretError) -> Error {
        match &error {
            SecretError::Invalid(_) => Error::invalid(error.to_string()),
            SecretError::NotFound { .. } => Error::not_found(error.to_string()),
            SecretError::Store(store_error) => store_failure(store_error),
            SecretError::KeyFile { .. }
            | SecretError::KeyLength { .. }
            | SecretError::Unsealable { .. } => Error::internal(&error),
        }
    }
}

impl From<AccessError> for Error {
    fn from(error: AccessError) -> Error {
        match &error {
            AccessError::Invalid(_) => Error::invalid(error.to_string()),
            AccessError::Forbidden(_) => Error::forbidden(error.to_string()),
            AccessError::NotFound { .. } => Error::not_found(error.to_string()),
            AccessError::Store(store_error) => store_failure(store_error),
            AccessError::Core(core_error) => core_error.clone(),
        }
    }
}

#[async_trait]
impl Workloads for Supervisor {
    fn create(&self, admission: &Admission, spec: WorkloadSpec) -> Result<WorkloadView, Error> {
        Ok(Supervisor::create(self, admission, spec)?)
    }

    fn apply(
        &self,
        admission: &Admission,
        specs: Vec<WorkloadSpec>,
        dry_run: bool,
    ) -> Result<Vec<ApplyOutcome>, Error> {
        Ok(Supervisor::apply(self, admission, specs, dry_run)?)
    }

    fn get(&self, project: &str, name: &str) -> Result<WorkloadView, Error> {
        Ok(Supervisor::get(self, project, name)?)
    }

    fn list(&self, project: Option<&str>) -> Vec<WorkloadView> {
        Supervisor::list(self, project)
    }

    async fn stop(
        &self,
        admission: &Admission,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<WorkloadView, Error> {
        Ok(Supervisor::stop(self, admission, name, grace).await?)
    }

    async fn kill(
        &self,
        admission: &Admission,
        name: &str,
        signal: Signal,
    ) -> Result<WorkloadView, Error> {
        Ok(Supervisor::kill(self, admission, name, signal).await?)
    }

    async fn start(&self, admission: &Admission, name: &str) -> Result<WorkloadView, Error> {
        Ok(Supervisor::start_workload(self, admission, name).await?)
    }

    async fn restart(&self, admission: &Admission, name: &str) -> Result<WorkloadView, Error> {
        Ok(Supervisor::restart(self, admission, name).await?)
    }

    async fn delete(&self, admission: &Admission, name: &str, force: bool) -> Result<(), Error> {
        Ok(Supervisor::delete(self, admission, name, force).await?)
    }

    async fn wait_until_settled(
        &self,
        project: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<WorkloadView, Error> {
        Ok(Supervisor::wait_until_settled(self, project, name, timeout).await?)
    }

    fn record_event(
        &self,
        admission: &Admission,
        name: &str,
        kind: EventKind,
        message: &str,
        data: serde_json::Value,
    ) -> Result<Event, Error> {
        Ok(Supervisor::record_event(
            self, admission, name, kind, message, data,
        )?)
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        Supervisor::subscribe(self)
    }

    fn events_after(
        &self,
        project: Option<&str>,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, Error> {
        Ok(Supervisor::events_after(self, project, after_id, limit)?)
    }

    fn latest_events(&self, project: Option<&str>, limit: usize) -> Result<Vec<Event>, Error> {
        Ok(Supervisor::latest_events(self, project, limit)?)
    }

    fn query_metrics(
        &self,
        project: &str,
        query: &ward_core::services::MetricQuery,
    ) -> Result<Vec<ward_core::services::MetricSeries>, Error> {
        Ok(Supervisor::query_metrics(self, project, query)?)
    }

    fn logs(
        &self,
        project: &str,
        name: &str,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<InstanceLines, Error> {
        Ok(Supervisor::logs(self, project, name, tail, since)?)
    }

    fn follow_logs(
        &self,
        project: &str,
        name: &str,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<(InstanceLines, Box<dyn LogFollow>), Error> {
        let (lines, follow) = Supervisor::follow_logs(self, project, name, tail, since)?;
        Ok((lines, Box::new(follow)))
    }

    async fn exec(
        &self,
        project: &str,
        name: &str,
        replica: Option<u32>,
        request: &ExecRequest,
    ) -> Result<ExecSession, Error> {
        Ok(Supervisor::exec(self, project, name, replica, request).await?)
    }

    async fn attach(
        &self,
        project: &str,
        name: &str,
        replica: Option<u32>,
    ) -> Result<ExecSession, Error> {
        Ok(Supervisor::attach(self, project, name, replica).await?)
    }

    fn images_in_use(&self) -> Vec<String> {
        Supervisor::images_in_use(self)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn set_quota(
        &self,
        project: &str,
        quota: &Quota,
        admission: Option<&Admission>,
    ) -> Result<(), Error> {
        Ok(Supervisor::set_quota(self, project, quota, admission)?)
    }

    fn quota(&self, project: &str) -> Result<(Option<Quota>, QuotaUsage), Error> {
        Ok(Supervisor::quota(self, project)?)
    }

    fn volumes(&self, admission: &Admission) -> Result<Vec<VolumeView>, Error> {
        Ok(Supervisor::volumes(self, admission)?)
    }

    fn remove_volume(&self, admission: &Admission, name: &str) -> Result<(), Error> {
        Ok(Supervisor::remove_volume(self, admission, name)?)
    }

    fn prune_volumes(&self, admission: &Admission) -> Result<Vec<String>, Error> {
        Ok(Supervisor::prune_volumes(self, admission)?)
    }
}

/// What callers see of a stored image.
fn image_view(image: StoredImage) -> ImageView {
    ImageView {
        layers: image
            .manifest
            .layers
            .iter()
            .map(|layer| layer.digest.to_string())
            .collect(),
        config: serde_json::to_value(&image.config.config).unwrap_or_default(),
        record: image.record,
    }
}

/// A pull's progress as callers see it.
pub(crate) fn pull_progress(progress: ward_image::pull::PullProgress) -> PullProgress {
    use ward_image::pull::PullProgress as Pulled;
    match progress {
        Pulled::Resolved {
            manifest_digest,
            blobs,
        } => PullProgress::Resolved {
            manifest_digest: manifest_digest.to_string(),
            blobs: blobs
                .into_iter()
                .map(|(digest, size)| (digest.to_string(), size))
                .collect(),
        },
        Pulled::Blob {
            digest,
            done,
            total,
        } => PullProgress::Blob {
            digest: digest.to_string(),
            done,
            total,
        },
    }
}

#[async_trait]
impl Images for ImageService {
    async fn pull(
        &self,
        project: &str,
        reference: &str,
        plain_http: bool,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
        admission: Option<&Admission>,
    ) -> Result<ImageView, Error> {
        let report = |pulled| progress(pull_progress(pulled));
        let image =
            ImageService::pull(self, project, reference, plain_http, &report, admission).await?;
        Ok(image_view(image))
    }

    async fn import(
        &self,
        project: &str,
        path: PathBuf,
        name: Option<String>,
        admission: Option<&Admission>,
    ) -> Result<Vec<ImageView>, Error> {
        let images = ImageService::import(self, project, path, name, admission).await?;
        Ok(images.into_iter().map(image_view).collect())
    }

    async fn login(
        &self,
        project: &str,
        registry: &str,
        username: &str,
        password: &str,
        plain_http: bool,
        admission: Option<&Admission>,
    ) -> Result<String, Error> {
        Ok(ImageService::login(
            self, project, registry, username, password, plain_http, admission,
        )
        .await?)
    }

    fn logout(
        &self,
        project: &str,
        registry: &str,
        admission: Option<&Admission>,
    ) -> Result<(String, String), Error> {
        let canonical = ward_image::credentials::canonical_registry(registry).ok();
        let username = ImageService::logins(self, project)?
            .into_iter()
            .find(|(known, _)| Some(known) == canonical.as_ref())
            .map(|(_, username)| username)
            .unwrap_or_default();
        let registry = ImageService::logout(self, project, registry, admission)?;
        Ok((registry, username))
    }

    fn logins(&self, project: &str) -> Result<Vec<(String, String)>, Error> {
        Ok(ImageService::logins(self, project)?)
    }

    fn verify(&self, project: &str, references: &[String]) -> Result<(), Error> {
        Ok(ImageService::verify(self, project, references)?)
    }

    fn export(
        &self,
        project: &str,
        references: &[String],
        out: &mut dyn std::io::Write,
    ) -> Result<(), Error> {
        Ok(ImageService::export(self, project, references, out)?)
    }

    fn list(&self, project: &str) -> Result<Vec<ImageRecord>, Error> {
        Ok(ImageService::list(self, project)?)
    }

    fn get(&self, project: &str, reference: &str) -> Result<ImageView, Error> {
        Ok(image_view(ImageService::get(self, project, reference)?))
    }

    fn remove(
        &self,
        project: &str,
        reference: &str,
        in_use: &[String],
        force: bool,
        admission: Option<&Admission>,
    ) -> Result<ImageRecord, Error> {
        Ok(ImageService::remove(
            self, project, reference, in_use, force, admission,
        )?)
    }

    fn prune(&self, in_use: &[String]) -> Result<PruneReport, Error> {
        let digests: Vec<ward_image::Digest> = in_use
            .iter()
            .filter_map(|digest| digest.parse().ok())
            .collect();
        Ok(ImageService::prune(self, &digests)?)
    }
}

impl Secrets for SecretService {
    fn set(
        &self,
        project: &str,
        name: &str,
        value: &[u8],
        admission: Option<&Admission>,
    ) -> Result<SecretInfo, Error> {
        Ok(SecretService::set(self, project, name, value, admission)?)
    }

    fn list(&self, project: &str) -> Result<Vec<SecretInfo>, Error> {
        Ok(SecretService::list(self, project)?)
    }

    fn info(&self, project: &str, name: &str) -> Result<SecretInfo, Error> {
        Ok(SecretService::info(self, project, name)?)
    }

    fn reveal(&self, project: &str, name: &str) -> Result<Vec<u8>, Error> {
        Ok(SecretService::reveal(self, project, name)?)
    }

    fn remove(
        &self,
        project: &str,
        name: &str,
        admission: Option<&Admission>,
    ) -> Result<SecretInfo, Error> {
        Ok(SecretService::remove(self, project, name, admission)?)
    }
}

impl Keys for AccessService {
    fn create_key(
        &self,
        creator: &Principal,
        request: &NewKey,
        admission: Option<&Admission>,
    ) -> Result<(KeyView, String), Error> {
        Ok(AccessService::create_key(
            self, creator, request, admission,
        )?)
    }

    fn authenticate(&self, presented: &str) -> Result<Option<Principal>, Error> {
        Ok(AccessService::authenticate(self, presented)?)
    }

    fn list_keys(&self, viewer: &Principal) -> Result<Vec<KeyView>, Error> {
        Ok(AccessService::list_keys(self, viewer)?)
    }

    fn revoke_key(
        &self,
        revoker: &Principal,
        id: &str,
        admission: Option<&Admission>,
    ) -> Result<KeyView, Error> {
        Ok(AccessService::revoke_key(self, revoker, id, admission)?)
    }

    fn projects(&self, viewer: &Principal) -> Result<Vec<String>, Error> {
        Ok(AccessService::projects(self, viewer)?)
    }

    fn create_project(&self, name: &str, admission: Option<&Admission>) -> Result<(), Error> {
        Ok(AccessService::create_project(self, name, admission)?)
    }

    fn audit(
        &self,
        reader: &Principal,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, Error> {
        Ok(AccessService::audit(self, reader, after_seq, limit)?)
    }

    fn verify_audit(&self) -> Result<AuditVerification, Error> {
        Ok(AccessService::verify_audit(self)?)
    }
}

impl Users for UserService {
    fn set_password(
        &self,
        name: &str,
        password: &str,
        admission: Option<&Admission>,
    ) -> Result<UserView, Error> {
        Ok(UserService::set_password(self, name, password, admission)?)
    }

    fn list(&self) -> Result<Vec<UserView>, Error> {
        Ok(UserService::list(self)?)
    }

    fn remove(&self, name: &str, admission: Option<&Admission>) -> Result<(), Error> {
        Ok(UserService::remove(self, name, admission)?)
    }

    fn grant(
        &self,
        user: &str,
        grant: &Grant,
        admission: Option<&Admission>,
    ) -> Result<UserView, Error> {
        Ok(UserService::grant(self, user, grant, admission)?)
    }

    fn revoke(
        &self,
        user: &str,
        project: Option<&str>,
        admission: Option<&Admission>,
    ) -> Result<UserView, Error> {
        Ok(UserService::revoke(self, user, project, admission)?)
    }

    fn login(
        &self,
        name: &str,
        password: &str,
        project: Option<&str>,
        lifetime: Duration,
    ) -> Result<Session, Error> {
        Ok(UserService::login(self, name, password, project, lifetime)?)
    }

    fn authenticate(&self, token: &str) -> Result<Option<Principal>, Error> {
        Ok(UserService::authenticate(self, token)?)
    }

    fn csrf_token(&self, session_token: &str) -> String {
        UserService::csrf_token(self, session_token)
    }
}

impl Models for ModelService {
    fn list(&self, project: &str) -> Result<Vec<ModelView>, Error> {
        Ok(ModelService::list(self, project)?)
    }

    fn get(&self, project: &str, name: &str) -> Result<ModelView, Error> {
        Ok(ModelService::get(self, project, name)?)
    }

    fn import(
        &self,
        project: &str,
        path: PathBuf,
        name: &str,
        admission: Option<&Admission>,
    ) -> Result<ModelView, Error> {
        Ok(ModelService::import(self, project, &path, name, admission)?)
    }

    fn remove(
        &self,
        project: &str,
        name: &str,
        force: bool,
        admission: Option<&Admission>,
    ) -> Result<ModelView, Error> {
        Ok(ModelService::remove(self, project, name, force, admission)?)
    }
}

impl ward_core::inference::Inference for Inference {
    fn loaded(&self, project: &str) -> Result<Vec<ward_core::inference::LoadedModel>, Error> {
        Ok(Inference::loaded(self, project)?)
    }

    fn runner_failures(&self) -> u64 {
        Inference::runner_failures(self)
    }

    fn loaded_everywhere(&self) -> Result<Vec<(String, ward_core::inference::LoadedModel)>, Error> {
        Ok(Inference::loaded_everywhere(self)?)
    }

    fn load(&self, project: &str, model: &str) -> Result<ward_core::inference::LoadedModel, Error> {
        Ok(Inference::load(self, project, model)?)
    }

    fn unload(&self, project: &str, model: &str) -> Result<(), Error> {
        Ok(Inference::unload(self, project, model)?)
    }

    fn complete(
        &self,
        project: &str,
        model: &str,
        request: ward_core::inference::CompletionRequest,
    ) -> Result<tokio::sync::mpsc::Receiver<ward_core::inference::CompletionEvent>, Error> {
        let request_keep_alive = request.keep_alive;
        let (generate, calls_tools) = crate::completion::runner_request(request)?;
        let keep_alive = request_keep_alive;
        let mut events = self.generate(
            project,
            model,
            ward_model::runner::Request::Generate(generate),
            keep_alive,
        )?;
        let mut translator = crate::completion::Translator::new(calls_tools);
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                for event in translator.translate(event) {
                    if sender.send(event).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(receiver)
    }

    fn embed(
        &self,
        project: &str,
        model: &str,
        request: ward_core::inference::EmbeddingRequest,
    ) -> Result<ward_core::inference::Embeddings, Error> {
        use ward_model::runner::{self as runner, Event};
        let mut events = self.generate(
            project,
            model,
            runner::Request::Embed(runner::Embed {
                inputs: request.inputs,
            }),
            request.keep_alive,
        )?;
        match events.blocking_recv() {
            Some(Event::Embeddings {
                vectors,
                prompt_tokens,
            }) => Ok(ward_core::inference::Embeddings {
                vectors,
                prompt_tokens,
            }),
            Some(Event::Error(refusal)) => Err(refused(refusal)),
            _ => Err(Error::new(
                ErrorKind::Unavailable,
                format!("the runner of model {model} ended without embeddings; try again"),
            )),
        }
    }
}
