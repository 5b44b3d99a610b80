//! The command line: clap types for every subcommand, flag values checked as they are parsed,
//! and clap's own errors turned into the one `error: ` line of CONTRACT §1.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use ward_spec::units;

/// Exit status of a command line that could not be parsed (like clap and most Unix tools).
pub const USAGE_ERROR_EXIT_CODE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ward",
    version,
    about = "Run and supervise workloads (processes, containers, VMs, WebAssembly) on this host",
    after_help = "Start the daemon with 'ward serve'; every other command talks to it.\n\
                  Run 'ward COMMAND --help' for the options of one command."
)]
pub struct CommandLine {
    #[command(flatten)]
    pub global_options: ClientOptions,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Client(ClientCommand),
    /// Run the Ward daemon
    Serve(Deferred<ServeArgs>),
    /// Print a shell completion script (bash, zsh, fish)
    #[command(after_help = COMPLETION_EXAMPLES)]
    Completion(Deferred<CompletionArgs>),
    /// Score a CSV time series for anomalies with the detector that watches live workloads
    #[command(after_help = DETECT_HELP)]
    Detect(Deferred<DetectArgs>),
    /// Forecast a CSV time series: its level, trend and daily and weekly patterns, carried forward
    #[command(after_help = FORECAST_HELP)]
    Forecast(Deferred<ForecastArgs>),
}

/// The commands that talk to the daemon.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Run an image or a host program as a workload, in the background (as 'docker run -d')
    #[command(after_help = RUN_EXAMPLES)]
    Run(Deferred<Box<RunArgs>>),
    /// Create or update workloads from a YAML or JSON file, or a Compose file (idempotent)
    Apply(Deferred<ApplyArgs>),
    /// Bring a Compose file's services up as workloads, or take them down
    #[command(after_help = COMPOSE_EXAMPLES)]
    Compose(Deferred<ComposeArgs>),
    /// List workloads
    #[command(visible_alias = "ls")]
    Ps(Deferred<PsArgs>),
    /// Show the full document of one or more workloads as JSON
    Inspect(Deferred<InspectArgs>),
    /// Show the output of a workload
    Logs(Deferred<LogsArgs>),
    /// Start stopped workloads
    Start(Deferred<NamesArgs>),
    /// Stop running workloads (SIGTERM, then SIGKILL after the grace period)
    Stop(Deferred<StopArgs>),
    /// Kill workloads (SIGKILL stops them), or send them another signal with -s
    Kill(Deferred<KillArgs>),
    /// Restart workloads
    Restart(Deferred<NamesArgs>),
    /// Remove workloads
    #[command(visible_alias = "remove")]
    Rm(Deferred<RemoveArgs>),
    /// Run a command inside a running workload
    Exec(Deferred<ExecArgs>),
    /// Connect this terminal to a workload that runs on one (started with -t or tty: true)
    Attach(Deferred<AttachArgs>),
    /// Show what happened to workloads: starts, exits, restarts, health changes
    Events(Deferred<EventsArgs>),
    /// Live view of CPU, memory and processes of all workloads (like 'docker stats')
    Top(Deferred<TopArgs>),
    /// CPU, memory and processes of all workloads, once (like 'docker stats --no-stream')
    Stats(Deferred<StatsArgs>),
    /// Manage images: pull, import, export, ls, inspect, rm, prune
    Image(Deferred<ImageArgs>),
    /// Manage named volumes: ls, rm, prune
    Volume(Deferred<VolumeArgs>),
    /// Show a stored metric of the project's workloads (memory, cpu, pids, or a full name)
    #[command(after_help = METRICS_HELP)]
    Metrics(Deferred<MetricsArgs>),
    /// What behaves unlike its own history lately, the most unusual first
    Anomalies(Deferred<AnomaliesArgs>),
    /// Manage models: import, ls, show, rm, ps, load, unload
    Model(Deferred<ModelArgs>),
    /// Talk with a model: each line you type is a message, the answer streams back
    #[command(after_help = CHAT_HELP)]
    Chat(Deferred<ChatArgs>),
    /// Log in to a container registry; the daemon keeps the login for this project's pulls
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(Deferred<LoginArgs>),
    /// Forget the login to a container registry
    Logout(Deferred<LogoutArgs>),
    /// Manage API keys: create, ls, revoke
    #[command(after_help = KEY_EXAMPLES)]
    Key(Deferred<KeyArgs>),
    /// Read the audit log and check that nobody altered it
    Audit(Deferred<AuditArgs>),
    /// Manage projects (tenants): create, ls
    Project(Deferred<ProjectArgs>),
    /// Manage users and the roles they hold per project
    User(Deferred<UserArgs>),
    /// Show or set a project's quota
    Quota(Deferred<QuotaArgs>),
    /// Manage secrets: set, ls, get, rm (sealed at rest; workloads get them as files or variables)
    #[command(after_help = SECRET_EXAMPLES)]
    Secret(Deferred<SecretArgs>),
    /// Alerts of the project's rules, and silences: ls, silence, silences, expire
    #[command(after_help = ALERT_EXAMPLES)]
    Alert(Deferred<AlertArgs>),
}

const ALERT_EXAMPLES: &str = "\
Examples:
  ward alert ls                                    # pending and firing alerts
  ward alert silence alertname=HighMemory --for 2h --comment 'known leak, fix on Monday'
  ward alert silence workload=api --for 30m
  ward alert silences
  ward alert expire 3f2a9c0d1e4b5a67

Rules and receivers are in the daemon's config file, under alerts: (see the README).";

#[derive(Debug, Args)]
pub struct AlertArgs {
    #[command(subcommand)]
    pub command: AlertCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// List pending and firing alerts
    #[command(visible_alias = "list")]
    Ls,
    /// Mute the alerts whose labels match every LABEL=VALUE, for a while
    Silence {
        /// Label matchers, like alertname=HighMemory workload=api
        #[arg(value_name = "LABEL=VALUE", required = true)]
        matchers: Vec<String>,
        /// How long, like 2h
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
        /// Why, for whoever reads the silence later
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List silences that have not ended
    Silences,
    /// End a silence now
    Expire { id: String },
}

const SECRET_EXAMPLES: &str = "\
Examples:
  ward secret set db-password                    # asks for the value (or reads stdin)
  ward secret set tls-key --from-file key.pem
  ward run --name api --secret db-password -- ./api   # the value in /run/secrets/db-password
  ward secret ls
  ward secret get db-password                    # needs the secrets:read capability

In a spec: secrets: [db-password, {name: api-token, env: API_TOKEN}, {name: tls-key, file: /etc/tls/key.pem}].";

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret; the value comes from --from-file, else standard input
    Set {
        name: String,
        /// Read the value from this file
        #[arg(long, value_name = "FILE")]
        from_file: Option<std::path::PathBuf>,
    },
    /// List secrets (names and times, never values)
    #[command(visible_alias = "list")]
    Ls,
    /// Print a secret's value (needs the secrets:read capability; the read is audited)
    Get { name: String },
    /// Remove secrets
    Rm {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
}

const KEY_EXAMPLES: &str = "\
Examples:
  ward key create ci --project web --role operator --expires 30d
  ward key create ops --project web --role operator --capability exec
  ward key create scraper --role viewer              # every project: Prometheus, dashboards
  ward key ls
  ward key revoke 3f9a0c1d2e4b

A key is shown once, when it is created; Ward keeps only a hash of it. Roles: viewer (read),
operator (manage workloads and images), admin (keys too). Capabilities on top of a role:
exec, secrets:read, audit:read.";

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it (once)
    Create {
        /// A name saying what the key is for
        name: String,
        /// admin, operator or viewer
        #[arg(long, default_value = "viewer", value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Grant a capability on top of the role: exec, secrets:read, audit:read, host-paths (repeatable)
        #[arg(long = "capability", value_name = "CAPABILITY", value_parser = ["exec", "secrets:read", "audit:read", "host-paths"])]
        capabilities: Vec<String>,
        /// Stop working after this long, like 30d or 12h
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_text_flag)]
        expires: Option<String>,
    },
    /// List keys (never their secrets)
    #[command(visible_alias = "list")]
    Ls,
    /// Revoke keys at once
    Revoke {
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first
    #[command(visible_alias = "list")]
    Ls {
        /// Entries after this sequence number
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many entries
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Check the hash chain; fails naming the first entry that was altered
    Verify,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, or set a user's new password (asked for, or read from stdin)
    Create { name: String },
    /// List users and their roles
    #[command(visible_alias = "list")]
    Ls,
    /// Remove users, their roles and their sessions
    Rm {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Give a user a role in a project (--project), or in every project (--all-projects)
    Grant {
        name: String,
        /// admin, operator or viewer
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// A capability on top of the role: exec, secrets:read, audit:read, host-paths (repeatable)
        #[arg(long = "capability", value_name = "CAPABILITY", value_parser = ["exec", "secrets:read", "audit:read", "host-paths"])]
        capabilities: Vec<String>,
        /// The grant covers every project
        #[arg(long)]
        all_projects: bool,
    },
    /// Take back a user's role in a project (--project), or in every project (--all-projects)
    Revoke {
        name: String,
        #[arg(long)]
        all_projects: bool,
    },
}

#[derive(Debug, Args)]
pub struct QuotaArgs {
    #[command(subcommand)]
    pub command: QuotaCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Show the project's limits and what it uses
    Show,
    /// Set the project's limits (a key of every project only); a limit left out is no limit
    Set {
        /// Cores, summed over every replica
        #[arg(long, value_parser = parse_cpu_flag)]
        cpu: Option<String>,
        /// Memory, summed over every replica; also caps what the project's instances use
        #[arg(long, value_parser = parse_size_flag)]
        memory: Option<String>,
        #[arg(long)]
        workloads: Option<u64>,
        #[arg(long)]
        replicas: Option<u64>,
        #[arg(long)]
        gpus: Option<u64>,
        /// Bytes in the project's named volumes
        #[arg(long, value_parser = parse_size_flag)]
        volume_bytes: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(subcommand)]
    pub command: ProjectCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project
    Create { name: String },
    /// List the projects this key reaches
    #[command(visible_alias = "list")]
    Ls,
}

const LOGIN_EXAMPLES: &str = "\
Examples:
  ward login ghcr.io -u octocat              # asks for the password or token
  echo \"$TOKEN\" | ward login ghcr.io -u octocat --password-stdin
  ward login docker.io -u me
  ward login -u alice --project web           # a Ward user's session, no registry

The daemon checks the login with the registry, then keeps it in DATA_DIR/registries.json
(mode 0600) for the pulls of this project. Registries on this machine (localhost, 127.0.0.1)
are spoken to over plain HTTP, as Docker does.";

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry, like ghcr.io, docker.io or 127.0.0.1:5000; without one, log in to the
    /// Ward daemon as a user (the session is kept in ~/.config/ward/sessions.json)
    pub registry: Option<String>,

    /// How long the Ward session lasts, like 12h (the default) or 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_text_flag)]
    pub expires: Option<String>,

    /// Username [default: asked for on the terminal]
    #[arg(short, long)]
    pub username: Option<String>,

    /// Password or token (visible to other users in the process list; prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,

    /// Read the password or token from standard input
    #[arg(long)]
    pub password_stdin: bool,

    /// Speak plain HTTP to the registry (for registries without TLS)
    #[arg(long)]
    pub plain_http: bool,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry to forget the login to; without one, end the Ward session
    pub registry: Option<String>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List the project's named volumes and the workloads that mount them
    #[command(visible_alias = "list")]
    Ls {
        /// Print only the names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove named volumes and their files; refused while a workload mounts one
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(value_name = "VOLUME", required = true)]
        names: Vec<String>,
    },
    /// Remove every named volume of the project that no workload mounts
    Prune,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The model, as `ward model ls` names it
    pub model: String,
    /// The system prompt the conversation starts with
    #[arg(long)]
    pub system: Option<String>,
    /// The most tokens one answer may take
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Sampling temperature, 0 for the likeliest token every time
    #[arg(long)]
    pub temperature: Option<f32>,
    /// The same seed gives the same answers
    #[arg(long)]
    pub seed: Option<i64>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

const CHAT_HELP: &str = "\
In the conversation:
  /system TEXT   set the system prompt (and start over)
  /reset         forget the conversation, keep the system prompt
  /exit          leave (as does end of input, Ctrl-D)";

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Pull a model: https://…/FILE.gguf, hf://ORG/REPO/FILE.gguf, or a registry reference
    /// (Docker Model Runner's layout); an interrupted pull resumes
    Pull {
        #[arg(value_name = "SOURCE")]
        source: String,
        /// The model's name [default: the file's stem, or the repository's last part]
        #[arg(long)]
        name: Option<String>,
    },
    /// Push a model to a registry in Docker Model Runner's layout ('docker model pull' takes it)
    Push {
        #[arg(value_name = "MODEL")]
        name: String,
        /// Where to: registry/ns/model:tag
        #[arg(value_name = "REFERENCE")]
        reference: String,
    },
    /// Import a GGUF model file or a sentence-transformers directory
    Import {
        /// The model file, or a directory with config.json, model.safetensors and tokenizer.json
        path: std::path::PathBuf,
        /// The model's name [default: the file's stem]
        #[arg(long)]
        name: Option<String>,
    },
    /// List models
    #[command(visible_alias = "list")]
    Ls,
    /// Show what a model file says of itself: architecture, parameters, quantisation,
    /// context length, chat template
    Show {
        #[arg(value_name = "MODEL")]
        name: String,
    },
    /// Remove models; a file goes once no name points at it
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(value_name = "MODEL", required = true)]
        names: Vec<String>,
        /// Remove even a loaded model
        #[arg(short, long)]
        force: bool,
    },
    /// List the loaded models: memory, slots, requests, when each unloads (like 'ollama ps')
    Ps,
    /// Load a model now rather than at its first request
    Load {
        #[arg(value_name = "MODEL")]
        name: String,
    },
    /// Unload a model; its requests in flight end with an error
    Unload {
        #[arg(value_name = "MODEL")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry (like 'docker pull')
    Pull {
        /// Image reference, like busybox:1.36 or ghcr.io/owner/repo:tag
        reference: String,
        /// Speak plain HTTP to the registry (for local registries without TLS)
        #[arg(long)]
        plain_http: bool,
    },
    /// Import a 'docker save' archive or an OCI image layout, tar or directory (like 'docker load')
    Import {
        /// The archive or layout directory ('-' reads an archive from standard input)
        file: std::path::PathBuf,
        /// Name for images the archive does not name
        #[arg(long)]
        name: Option<String>,
    },
    /// Write images to one archive, both an OCI layout and a 'docker save' tar (like 'docker save')
    Export {
        #[arg(value_name = "IMAGE", required = true)]
        references: Vec<String>,
        /// Write the archive to FILE [default: standard output, unless it is a terminal]
        #[arg(short, long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
    /// List images
    #[command(visible_alias = "list")]
    Ls,
    /// Show images as JSON
    Inspect {
        #[arg(value_name = "IMAGE", required = true)]
        references: Vec<String>,
    },
    /// Remove image names
    Rm {
        #[arg(value_name = "IMAGE", required = true)]
        references: Vec<String>,
        /// Remove even if workloads use the image
        #[arg(short, long)]
        force: bool,
    },
    /// Delete stored blobs and unpacked layers that no image name and no workload uses
    Prune,
}

impl ClientCommand {
    /// The global options given after the subcommand.
    pub fn client_options(&self) -> &ClientOptions {
        match self {
            ClientCommand::Run(arguments) => &arguments.client_options,
            ClientCommand::Apply(arguments) => &arguments.client_options,
            ClientCommand::Compose(arguments) => &arguments.client_options,
            ClientCommand::Ps(arguments) => &arguments.client_options,
            ClientCommand::Inspect(arguments) => &arguments.client_options,
            ClientCommand::Logs(arguments) => &arguments.client_options,
            ClientCommand::Start(arguments) | ClientCommand::Restart(arguments) => {
                &arguments.client_options
            }
            ClientCommand::Stop(arguments) => &arguments.client_options,
            ClientCommand::Kill(arguments) => &arguments.client_options,
            ClientCommand::Rm(arguments) => &arguments.client_options,
            ClientCommand::Exec(arguments) => &arguments.client_options,
            ClientCommand::Attach(arguments) => &arguments.client_options,
            ClientCommand::Events(arguments) => &arguments.client_options,
            ClientCommand::Metrics(arguments) => &arguments.client_options,
            ClientCommand::Anomalies(arguments) => &arguments.client_options,
            ClientCommand::Top(arguments) => &arguments.client_options,
            ClientCommand::Stats(arguments) => &arguments.client_options,
            ClientCommand::Image(arguments) => &arguments.client_options,
            ClientCommand::Volume(arguments) => &arguments.client_options,
            ClientCommand::Model(arguments) => &arguments.client_options,
            ClientCommand::Chat(arguments) => &arguments.client_options,
            ClientCommand::Login(arguments) => &arguments.client_options,
            ClientCommand::Logout(arguments) => &arguments.client_options,
            ClientCommand::Key(arguments) => &arguments.client_options,
            ClientCommand::Audit(arguments) => &arguments.client_options,
            ClientCommand::Project(arguments) => &arguments.client_options,
            ClientCommand::Quota(arguments) => &arguments.client_options,
            ClientCommand::User(arguments) => &arguments.client_options,
            ClientCommand::Secret(arguments) => &arguments.client_options,
            ClientCommand::Alert(arguments) => &arguments.client_options,
        }
    }
}

const RUN_EXAMPLES: &str = "\
Examples:
  ward run --name web -p 8080:80 --memory 256MiB nginx:1.27
  ward run --rm busybox echo hi                 # in the foreground, removed once it exits
  ward run --name web -p 8080:8000 -- python3 -m http.server 8000   # a host program
  ward run --name api -e MODE=prod --health-http 8000/healthz -- ./api

The workload runs in the background, supervised by the daemon; follow its output with
'ward logs -f NAME'.";

const COMPLETION_EXAMPLES: &str = "\
Examples:
  ward completion bash > /etc/bash_completion.d/ward
  ward completion zsh > \"${fpath[1]}/_ward\"
  ward completion fish > ~/.config/fish/completions/ward.fish";

/// How the client finds and addresses the daemon. Accepted before the subcommand and after it;
/// values here are the flags only; `config` layers the environment and files underneath.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct ClientOptions {
    /// URL of the daemon [env: WARD_HOST] [default: the address in DATA_DIR/ward.addr, else http://127.0.0.1:7380]
    #[arg(long, value_name = "URL")]
    pub host: Option<String>,

    /// API key [env: WARD_TOKEN] [default: DATA_DIR/admin.token]
    #[arg(long, value_name = "KEY")]
    pub token: Option<String>,

    /// Data directory of the daemon, to find its address and key [env: WARD_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Project the workloads belong to [env: WARD_PROJECT] [default: default]
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,

    /// Output format: table for people, json for scripts (NDJSON for streams); wide is table
    #[arg(short = 'o', long = "output", value_name = "FORMAT", value_enum)]
    pub output: Option<OutputFormat>,
}

impl ClientOptions {
    /// These options, with the ones given before the subcommand filling the gaps.
    pub fn merged_with(self, outer: &ClientOptions) -> ClientOptions {
        ClientOptions {
            host: self.host.or_else(|| outer.host.clone()),
            token: self.token.or_else(|| outer.token.clone()),
            data_dir: self.data_dir.or_else(|| outer.data_dir.clone()),
            project: self.project.or_else(|| outer.project.clone()),
            output: self.output.or(outer.output),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Wide,
}

impl OutputFormat {
    pub fn is_json(self) -> bool {
        self == OutputFormat::Json
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workload name [default: generated from the command or image, like python3-4f2a]
    #[arg(long, value_name = "NAME", value_parser = parse_name_flag)]
    pub name: Option<String>,

    /// Remove a workload of the same name first, if there is one (as 'podman run --replace')
    #[arg(long)]
    pub replace: bool,

    /// Container image (OCI reference), VM image or WebAssembly module
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,

    /// Kind of workload [default: container with --image, else process]
    #[arg(long, value_name = "KIND", value_parser = ["process", "container", "vm", "wasm"])]
    pub kind: Option<String>,

    /// Publish a port: [HOST_IP:]HOST:PORT[/tcp|udp] (repeatable)
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:PORT", value_parser = parse_port_mapping_flag)]
    pub publish: Vec<String>,

    /// Give the workload a secret of its project, as the file /run/secrets/NAME (repeatable)
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,

    /// Publish every port the image exposes on a free host port ('ward ps' shows which)
    #[arg(short = 'P', long)]
    pub publish_all: bool,

    /// Set an environment variable; KEY alone takes the value from this shell (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env_flag)]
    pub env: Vec<EnvironmentFlag>,

    /// Memory limit, like 512MiB or 2G
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_size_flag)]
    pub memory: Option<String>,

    /// CPU limit in cores, like 1.5 or 500m
    #[arg(long, value_name = "CORES", value_parser = parse_cpu_flag)]
    pub cpus: Option<String>,

    /// Most processes the workload may have
    #[arg(long, visible_alias = "pids-limit", value_name = "N")]
    pub pids: Option<u64>,

    /// Restart policy: never, on-failure[:N] or always [default: on-failure]
    #[arg(long, value_name = "POLICY", value_parser = parse_restart_flag)]
    pub restart: Option<String>,

    /// Mount a volume or host path: SRC:DST[:ro] (repeatable)
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]", value_parser = parse_volume_flag)]
    pub volumes: Vec<String>,

    /// Network mode [default: bridge]
    #[arg(long, value_name = "MODE", value_parser = ["bridge", "host", "none"])]
    pub network: Option<String>,

    /// User namespace: private (root inside is an unprivileged host user) or host (root
    /// inside is the host's root; needs an admin key of every project) [default: private]
    #[arg(long, value_name = "MODE", value_parser = ["private", "host"])]
    pub userns: Option<String>,

    /// Number of instances [default: 1]
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,

    /// Set a label (repeatable)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_label_flag)]
    pub labels: Vec<(String, String)>,

    /// Working directory of the command
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// Health check: HTTP GET on PORT/PATH answers 2xx or 3xx
    #[arg(long, value_name = "PORT/PATH", group = "health_probe", value_parser = parse_http_probe_flag)]
    pub health_http: Option<String>,

    /// Health check: TCP connect to PORT succeeds
    #[arg(long, value_name = "PORT", group = "health_probe", value_parser = parse_port_flag)]
    pub health_tcp: Option<u16>,

    /// Health check: shell command exits 0
    #[arg(long, value_name = "COMMAND", group = "health_probe")]
    pub health_cmd: Option<String>,

    /// Time between health checks, like 10s
    #[arg(long, value_name = "DURATION", requires = "health_probe", value_parser = parse_duration_text_flag)]
    pub health_interval: Option<String>,

    /// Time one health check may take, like 2s
    #[arg(long, value_name = "DURATION", requires = "health_probe", value_parser = parse_duration_text_flag)]
    pub health_timeout: Option<String>,

    /// Failed checks in a row before the instance is restarted
    #[arg(long, value_name = "N", requires = "health_probe")]
    pub health_retries: Option<u32>,

    /// Run in the background: accepted for Docker's sake, as every run does
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Keep the workload in the foreground with its output here, and remove it once it exits
    #[arg(long)]
    pub rm: bool,

    /// With -t: stay in the foreground, attached to the workload's terminal
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Run the workload on a terminal, which 'ward attach' connects to (TERM=xterm)
    #[arg(short = 't', long)]
    pub tty: bool,

    /// IMAGE [ARGS...] to run an image (as 'docker run'); -- COMMAND ARGS... for a host program
    #[arg(value_name = "IMAGE|COMMAND", trailing_var_arg = true)]
    pub command: Vec<String>,

    /// Whether the words of `command` came after `--` (a host program) rather than naming an
    /// image; clap drops that `--`, so [`parse_command_line`] sets this from the raw words.
    #[arg(skip)]
    pub after_dashes: bool,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

/// One `-e` flag: `KEY=VALUE`, or `KEY` to pass on the client's own value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvironmentFlag {
    Assignment { key: String, value: String },
    Inherited { key: String },
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// YAML or JSON file with one or more workloads; - reads standard input (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Show what would change without changing anything
    #[arg(long)]
    pub dry_run: bool,

    /// Return once the change is stored, without waiting for the workloads to start (by
    /// default apply waits, and fails if one of them cannot start)
    #[arg(long)]
    pub no_wait: bool,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

const COMPOSE_EXAMPLES: &str = "\
Examples:
  ward compose up                      # compose.yaml here; each service after its depends_on
  ward compose -f stack.yaml up --no-wait
  ward compose ps                      # its workloads; ward compose logs -f for their output
  ward compose down -v                 # and the named volumes the file declares
  ward apply -f compose.yaml           # the same as up

Each service becomes a workload of its name, labelled com.docker.compose.project=NAME;
services reach each other by name. Keys Ward does not read are refused by name.";

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The Compose file [default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml here]; also after the subcommand (--file after logs, whose -f
    /// follows)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Project name [default: the file's name:, else $COMPOSE_PROJECT_NAME, else its directory]
    #[arg(short = 'p', long = "project-name", value_name = "NAME", global = true)]
    pub project_name: Option<String>,

    #[command(subcommand)]
    pub command: ComposeCommand,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

/// `-f FILE` after a Compose subcommand.
#[derive(Debug, Default, Args)]
pub struct ComposeFile {
    /// The Compose file [default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml here]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

impl ComposeArgs {
    /// The files named before the subcommand and after it.
    pub fn all_files(&self) -> Vec<PathBuf> {
        let after = match &self.command {
            ComposeCommand::Up { file, .. }
            | ComposeCommand::Ps { file }
            | ComposeCommand::Down { file, .. } => file.files.as_slice(),
            ComposeCommand::Logs { files, .. } => files.as_slice(),
        };
        self.files.iter().chain(after).cloned().collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Create or update the services' workloads, each once its dependencies are ready
    Up {
        /// Accepted for Docker's sake: workloads always run in the background
        #[arg(short = 'd', long)]
        detach: bool,
        /// Return once the workloads are stored, without waiting for them to run
        #[arg(long)]
        no_wait: bool,
        /// Remove the project's workloads whose service is no longer in the file
        #[arg(long)]
        remove_orphans: bool,
        /// Show what would change without changing anything
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        file: ComposeFile,
    },
    /// List the project's workloads, stopped ones included
    Ps {
        #[command(flatten)]
        file: ComposeFile,
    },
    /// Show the services' output, each line after its instance's name
    Logs {
        /// Keep printing new output as it comes
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of each instance
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Only these services [default: all]
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
        /// The Compose file
        #[arg(long = "file", value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Remove the services' workloads
    Down {
        /// Also remove the named volumes the file declares
        #[arg(short = 'v', long)]
        volumes: bool,
        #[command(flatten)]
        file: ComposeFile,
    },
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all workloads, stopped ones included
    #[arg(short = 'a', long)]
    pub all: bool,

    /// Print only the names
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Show only workloads that match: name=TEXT (part of the name), label=KEY[=VALUE],
    /// state=STATE (or status=), kind=KIND, health=STATE (repeatable; all must match)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE", value_parser = parse_ps_filter)]
    pub filters: Vec<PsFilter>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

/// One `ps --filter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PsFilter {
    Name(String),
    Label { key: String, value: Option<String> },
    State(String),
    Kind(String),
    Health(String),
}

fn parse_ps_filter(text: &str) -> Result<PsFilter, String> {
    let (key, value) = text.split_once('=').ok_or_else(|| {
        format!("{text:?}: use KEY=VALUE, like name=web, label=team=web or state=running")
    })?;
    Ok(match key {
        "name" => PsFilter::Name(value.to_string()),
        "label" => match value.split_once('=') {
            Some((key, value)) => PsFilter::Label {
                key: key.to_string(),
                value: Some(value.to_string()),
            },
            None => PsFilter::Label {
                key: value.to_string(),
                value: None,
            },
        },
        "state" | "status" => {
            const STATES: [&str; 7] = [
                "pending", "starting", "running", "stopping", "stopped", "exited", "failed",
            ];
            if !STATES.contains(&value) {
                return Err(format!(
                    "{key}={value}: no such state; use one of {}",
                    STATES.join(", ")
                ));
            }
            PsFilter::State(value.to_string())
        }
        "kind" => PsFilter::Kind(value.to_string()),
        "health" => PsFilter::Health(value.to_string()),
        other => {
            return Err(format!(
                "{other}: no such filter; use name, label, state, kind or health"
            ))
        }
    })
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(id = "workloads", value_name = "NAME", required = true)]
    pub names: Vec<String>,

    /// Print fields through a template, one line per workload: {{.status.state}},
    /// {{.image}}, {{json .ports}} (keys as in the JSON document, in any case)
    #[arg(short = 'f', long, value_name = "TEMPLATE")]
    pub format: Option<String>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output as it comes
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Print only the last N lines of each instance ("all" for everything)
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_tail_flag)]
    pub tail: Option<TailLines>,

    /// Only output since a duration ago (10m, 1h30m) or an RFC 3339 time
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since_flag)]
    pub since: Option<String>,

    /// Prefix every line with its time
    #[arg(short = 't', long)]
    pub timestamps: bool,

    #[arg(id = "workload", value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

/// `--tail N` or `--tail all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailLines {
    All,
    Last(usize),
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(id = "workloads", value_name = "NAME", required = true)]
    pub names: Vec<String>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[arg(id = "workloads", value_name = "NAME", required = true)]
    pub names: Vec<String>,

    /// Seconds to wait after SIGTERM before SIGKILL [default: the daemon's, 10]
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    pub time: Option<u64>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[arg(id = "workloads", value_name = "NAME", required = true)]
    pub names: Vec<String>,

    /// The signal: a name like HUP or SIGUSR1, or a number [default: KILL, which stops the
    /// workload without restarting it]
    #[arg(short = 's', long, value_name = "SIGNAL")]
    pub signal: Option<String>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Stop running workloads before removing them
    #[arg(short = 'f', long)]
    pub force: bool,

    #[arg(id = "workloads", value_name = "NAME", required = true)]
    pub names: Vec<String>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep standard input open and send it to the command
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the command a terminal (TERM=xterm unless -e sets it)
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Set a variable for the command: KEY=VALUE (repeat for more)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env_flag)]
    pub env: Vec<EnvironmentFlag>,

    /// Run as this user: UID[:GID], or a name from the workload's /etc/passwd
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Working directory of the command (absolute)
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// Instance to run in [default: the first running one]
    #[arg(long, value_name = "N")]
    pub replica: Option<u32>,

    #[arg(id = "workload", value_name = "NAME")]
    pub name: String,

    /// Command to run and its arguments (put them after --)
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    pub command: Vec<String>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Instance to attach to [default: the first running one]
    #[arg(long, value_name = "N")]
    pub replica: Option<u32>,

    #[arg(id = "workload", value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they happen
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Only events after this event id
    #[arg(long, value_name = "ID", value_parser = parse_event_id_flag)]
    pub since: Option<i64>,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all workloads, stopped ones included
    #[arg(short = 'a', long)]
    pub all: bool,

    /// Accepted for Docker's sake: stats prints once
    #[arg(long)]
    pub no_stream: bool,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print the table once and exit
    #[arg(long)]
    pub once: bool,

    /// Time between refreshes
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval_flag)]
    pub interval: Duration,

    /// Show all workloads, stopped ones included
    #[arg(short = 'a', long)]
    pub all: bool,

    #[command(flatten)]
    pub client_options: ClientOptions,
}

const METRICS_HELP: &str = "\
Each row is one step of one instance: the average of its samples in that step unless
--aggregation says otherwise. Series: ward_instance_memory_bytes (memory),
ward_instance_cpu_usage_cores (cpu), ward_instance_pids (pids).

  ward metrics memory --since 30m
  ward metrics cpu --workload api --step 1m --aggregation max -o json";

#[derive(Debug, Args)]
pub struct AnomaliesArgs {
    /// How far back, like 1h or 1d
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_horizon_flag)]
    pub since: Duration,
    #[command(flatten)]
    pub client_options: ClientOptions,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// memory, cpu, pids, or a full series name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How far back, like 30m or 2d
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_horizon_flag)]
    pub since: Duration,
    /// Only this workload
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Length of a step, like 10s (default: the range in 240 steps)
    #[arg(long, value_name = "DURATION", value_parser = parse_horizon_flag)]
    pub step: Option<Duration>,
    /// How a step's samples become one value
    #[arg(long, default_value = "avg", value_parser = ["avg", "min", "max", "sum", "last", "count"])]
    pub aggregation: String,
    #[command(flatten)]
    pub client_options: ClientOptions,
}

const DETECT_HELP: &str = "\
Reads CSV with a header naming `timestamp` and `value` columns (other columns are ignored)
and writes `timestamp,value,anomaly_score,is_anomaly`, one row per input row, in order.
Timestamps: `YYYY-MM-DD HH:MM:SS`, RFC 3339 or seconds since the epoch. An empty value or
`nan` is a gap. Each score depends only on the rows before it, so a live stream works:

  ward detect --input cpu.csv --output scores.csv
  tail -f metrics.csv | ward detect";

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// The series to read (default: standard input)
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Where to write the scores (default: standard output)
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

const FORECAST_HELP: &str = "\
Reads CSV like 'ward detect' and writes `timestamp,forecast,lower,upper` at the series'
usual interval up to the horizon; `lower` and `upper` bound about 80 % of the errors the
chosen model made on the newest fifth of the history. With --limit, says on standard
error when the forecast first reaches that value:

  ward forecast --input memory.csv --horizon 2d --limit 536870912

With a workload's NAME it forecasts that workload's stored series instead (memory unless
--metric says otherwise), one row per instance, and says when memory reaches the
workload's limit:

  ward forecast api --horizon 6h
  ward forecast api --metric cpu -o json
  ward forecast --metric host_disk --horizon 7d    # when the data directory's disk fills";

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// A workload whose stored series to forecast, from the daemon (instead of a CSV)
    #[arg(value_name = "NAME", conflicts_with = "input")]
    pub name: Option<String>,
    /// The history to read (default: standard input)
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// With NAME: memory, cpu, pids, or a full series name; without NAME, a host series:
    /// host_disk (the data directory's disk, against its capacity) or a ward_host_* name
    #[arg(long, default_value = "memory")]
    pub metric: String,
    /// With NAME or a host series: how much stored history to forecast from, like 6h
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_horizon_flag)]
    pub history: Duration,
    /// How far ahead, like 6h or 7d
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_horizon_flag)]
    pub horizon: Duration,
    /// Say when the forecast first reaches this value (with NAME: default, the memory limit)
    #[arg(long, value_name = "VALUE", allow_negative_numbers = true)]
    pub limit: Option<f64>,
    #[command(flatten)]
    pub client_options: ClientOptions,
}

fn parse_horizon_flag(text: &str) -> Result<Duration, String> {
    let horizon = units::parse_duration(text)?;
    if horizon.is_zero() || horizon > Duration::from_secs(366 * 86_400) {
        return Err(format!(
            "horizon {text:?} must be more than 0 and at most a year, like 2d"
        ));
    }
    Ok(horizon)
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

/// `ward serve`. Fields hold the flags only (`None` when not given); `daemon_config` layers
/// the config file, the environment and the defaults underneath.
#[derive(Clone, Debug, Default, Args)]
pub struct ServeArgs {
    /// Data directory [env: WARD_DATA_DIR] [default: /var/lib/ward as root, else $XDG_DATA_HOME/ward]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free one, written to DATA_DIR/ward.addr [env: WARD_LISTEN] [default: 127.0.0.1:7380]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Configuration file
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Serve HTTPS: with the config's tls.cert and tls.key, else with a self-signed
    /// certificate generated into DATA_DIR/tls (clients on this host trust it on their own)
    #[arg(long)]
    pub tls: bool,
}

/// Parses the process's command line, or prints why it cannot and exits: help and version
/// normally with status 0, usage errors as one `error: ` line with status 2.
pub fn parse_command_line() -> CommandLine {
    let words: Vec<OsString> = std::env::args_os().collect();
    match parse_words(&words) {
        Ok(command_line) => command_line,
        Err(error) => exit_for_clap_error(error),
    }
}

/// Parses a whole command line, `words[0]` being the program.
pub fn parse_words(words: &[OsString]) -> Result<CommandLine, clap::Error> {
    let mut command_line = CommandLine::command()
        .try_get_matches_from(words)
        .and_then(|mut matches| CommandLine::from_arg_matches_mut(&mut matches))?;
    if let Command::Client(ClientCommand::Run(run)) = &mut command_line.command {
        // `ward run` takes the trailing words last, so they end the command line: they are a
        // host program when the word before them is the `--` that clap dropped.
        let before = words.len().checked_sub(run.command.len() + 1);
        run.after_dashes =
            !run.command.is_empty() && before.is_some_and(|index| words[index] == "--");
    }
    Ok(command_line)
}

/// A subcommand's arguments, which clap adds to the command tree only when the command line
/// enters that subcommand or shows its help: `ward run` builds the arguments of `run` alone,
/// not those of every command (clap's allocations for all of them cost each call about
/// 0.4 ms of page faults here).
#[derive(Debug)]
pub struct Deferred<T>(T);

impl<T> Deferred<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Deferred<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Deferred<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Args> Args for Deferred<T> {
    fn augment_args(command: clap::Command) -> clap::Command {
        command.defer(|command| build_deferred(command, T::augment_args))
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        command.defer(|command| build_deferred(command, T::augment_args_for_update))
    }

    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn from_arg_matches_mut(matches: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }

    fn update_from_arg_matches_mut(
        &mut self,
        matches: &mut clap::ArgMatches,
    ) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(matches)
    }
}

/// Adds the arguments of a deferred subcommand. The texts the subcommand's variant gave it
/// stay: clap sets them after the arguments, and the documentation of the flattened option
/// structs would otherwise replace them.
fn build_deferred(
    command: clap::Command,
    augment: fn(clap::Command) -> clap::Command,
) -> clap::Command {
    let about = command.get_about().cloned();
    let long_about = command.get_long_about().cloned();
    let mut command = augment(command);
    if let Some(about) = about {
        command = command.about(about);
    }
    if let Some(long_about) = long_about {
        command = command.long_about(long_about);
    }
    client_options_after_subcommands(command)
}

/// Commands that group subcommands (`ward image`, `key`, `secret`, ...) accept the client
/// options after their subcommand too: `ward image ls -o json`.
fn client_options_after_subcommands(command: clap::Command) -> clap::Command {
    const CLIENT_OPTIONS: [&str; 5] = ["host", "token", "data_dir", "project", "output"];
    if !command.has_subcommands() {
        return command;
    }
    CLIENT_OPTIONS.into_iter().fold(command, |command, id| {
        if command
            .get_arguments()
            .any(|argument| argument.get_id() == id)
        {
            command.mut_arg(id, |argument| argument.global(true))
        } else {
            command
        }
    })
}

fn exit_for_clap_error(error: clap::Error) -> ! {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => error.exit(),
        // Bare `ward`: show the help like `docker` does, to stdout, and succeed.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let mut command = CommandLine::command();
            let help = command.render_help().to_string();
            print!("{help}");
            std::process::exit(0)
        }
        ErrorKind::InvalidSubcommand => {
            let arguments: Vec<String> = std::env::args().skip(1).collect();
            let typed = first_word(&arguments).unwrap_or_default();
            eprintln!("error: {}", unknown_command(&typed));
            std::process::exit(USAGE_ERROR_EXIT_CODE)
        }
        _ => {
            let arguments: Vec<String> = std::env::args().skip(1).collect();
            let subcommand = subcommand_named_in(&arguments);
            eprintln!(
                "error: {}",
                one_line_usage_error(&error.render().to_string(), subcommand.as_deref())
            );
            std::process::exit(USAGE_ERROR_EXIT_CODE)
        }
    }
}

/// Docker and Podman commands that Ward spells differently, with the Ward command for the job.
const DOCKER_EQUIVALENTS: &[(&str, &str)] = &[
    ("images", "ward image ls"),
    ("rmi", "ward image rm"),
    ("pull", "ward image pull"),
    ("load", "ward image import"),
    ("save", "ward image export"),
    (
        "create",
        "ward apply -f FILE, or ward run (which also starts it)",
    ),
    ("port", "ward ps (its PORTS column) or ward inspect NAME"),
    (
        "build",
        "ward image import (build the image with docker, podman or buildah first)",
    ),
    (
        "network",
        "ward ps and ward inspect NAME: each project has one network, where workloads reach each other by name",
    ),
    ("system", "ward image prune and ward volume prune"),
    ("update", "ward apply -f FILE with the changed spec"),
    ("cp", "a volume (-v SRC:DST), or ward exec NAME -- cat FILE"),
    ("wait", "ward logs -f NAME (it ends when the workload does)"),
    ("pause", "ward stop NAME"),
    ("unpause", "ward start NAME"),
    ("info", "ward --version and ward top"),
    ("container", "ward ps, ward run, ward rm"),
    ("version", "ward --version"),
];

/// The message for a command Ward does not have: the Ward command for a Docker habit, else
/// a command spelled almost the same (one letter off or two swapped). Nothing looser: a
/// suggestion that sounds alike may do something else entirely (`rmi` is not `rm`).
fn unknown_command(typed: &str) -> String {
    if let Some((_, ward)) = DOCKER_EQUIVALENTS
        .iter()
        .find(|(docker, _)| *docker == typed)
    {
        return format!("ward has no '{typed}' command; use {ward}");
    }
    let command = CommandLine::command();
    let near = command
        .get_subcommands()
        .flat_map(|subcommand| {
            std::iter::once(subcommand.get_name()).chain(subcommand.get_all_aliases())
        })
        .filter(|name| !name.is_empty() && *name != "help")
        .min_by_key(|name| strsim::damerau_levenshtein(typed, name))
        .filter(|name| typed.len() > 2 && strsim::damerau_levenshtein(typed, name) == 1);
    match near {
        Some(name) => format!(
            "unrecognized subcommand '{typed}'; did you mean 'ward {name}'? see 'ward --help'"
        ),
        None => format!("unrecognized subcommand '{typed}'; see 'ward --help' for the commands"),
    }
}

/// The first word of a command line that is not a global option or its value.
fn first_word(arguments: &[String]) -> Option<String> {
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        if GLOBAL_OPTIONS_WITH_VALUES.contains(&word.as_str()) {
            words.next();
            continue;
        }
        if !word.starts_with('-') {
            return Some(word.clone());
        }
    }
    None
}

/// The global options that take a value, as the first word of a command line may follow them.
const GLOBAL_OPTIONS_WITH_VALUES: [&str; 6] = [
    "--host",
    "--token",
    "--data-dir",
    "--project",
    "--output",
    "-o",
];

/// The subcommand a command line was aiming at: the first word that is not a global option or
/// its value, when it names a subcommand (or one of its aliases).
fn subcommand_named_in(arguments: &[String]) -> Option<String> {
    let word = first_word(arguments)?;
    CommandLine::command()
        .get_subcommands()
        .find(|subcommand| {
            subcommand.get_name() == word || subcommand.get_all_aliases().any(|alias| alias == word)
        })
        .map(|subcommand| subcommand.get_name().to_string())
}

/// Squeezes clap's multi-paragraph error into one line: its first paragraph, its tips in
/// parentheses, and where to read more (`; see 'ward run --help'`). `subcommand` names the
/// help to point at when clap's message has no usage line.
pub fn one_line_usage_error(rendered: &str, subcommand: Option<&str>) -> String {
    let paragraphs: Vec<Vec<&str>> = rendered
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect()
        })
        .collect();
    let mut message = paragraphs
        .first()
        .map(|lines| lines.join(" "))
        .unwrap_or_default()
        .trim_start_matches("error:")
        .trim()
        .to_string();
    let tips: Vec<&str> = paragraphs
        .iter()
        .skip(1)
        .flatten()
        .filter_map(|line| line.strip_prefix("tip:"))
        .map(str::trim)
        .collect();
    if !tips.is_empty() {
        message.push_str(&format!(" ({})", tips.join("; ")));
    }
    let command_path = paragraphs
        .iter()
        .flatten()
        .find_map(|line| line.strip_prefix("Usage:"))
        .map(usage_command_path)
        .or_else(|| subcommand.map(|subcommand| format!("ward {subcommand}")))
        .unwrap_or_else(|| "ward".to_string());
    message.push_str(&format!("; see '{command_path} --help'"));
    message
}

/// `ward run [OPTIONS] [COMMAND]...` → `ward run`.
fn usage_command_path(usage: &str) -> String {
    usage
        .split_whitespace()
        .take_while(|word| {
            word.starts_with(|character: char| character.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|character| character.is_ascii_lowercase() || character == '-')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_name_flag(text: &str) -> Result<String, String> {
    units::validate_name(text).map(|()| text.to_string())
}

fn parse_port_mapping_flag(text: &str) -> Result<String, String> {
    units::parse_port_mapping(text).map(|_| text.to_string())
}

fn parse_port_flag(text: &str) -> Result<u16, String> {
    units::parse_port(text)
}

fn parse_env_flag(text: &str) -> Result<EnvironmentFlag, String> {
    if text.contains('=') {
        let (key, value) = units::parse_env_assignment(text)?;
        Ok(EnvironmentFlag::Assignment { key, value })
    } else {
        units::validate_env_key(text)?;
        Ok(EnvironmentFlag::Inherited {
            key: text.to_string(),
        })
    }
}

fn parse_label_flag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "invalid label {text:?}: use KEY=VALUE, like team=web"
        )),
    }
}

fn parse_size_flag(text: &str) -> Result<String, String> {
    units::parse_size(text).map(|_| text.to_string())
}

fn parse_cpu_flag(text: &str) -> Result<String, String> {
    units::parse_cpu(text).map(|_| text.to_string())
}

fn parse_restart_flag(text: &str) -> Result<String, String> {
    units::parse_restart(text).map(|_| text.to_string())
}

fn parse_volume_flag(text: &str) -> Result<String, String> {
    units::parse_volume(text).map(|_| text.to_string())
}

fn parse_http_probe_flag(text: &str) -> Result<String, String> {
    units::parse_http_probe(text).map(|_| text.to_string())
}

fn parse_duration_text_flag(text: &str) -> Result<String, String> {
    units::parse_duration(text).map(|_| text.to_string())
}

fn parse_interval_flag(text: &str) -> Result<Duration, String> {
    let interval = units::parse_duration(text)?;
    if interval < Duration::from_millis(100) {
        return Err(format!(
            "interval {text:?} is too short: use 100ms or more, like 1s"
        ));
    }
    Ok(interval)
}

fn parse_event_id_flag(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            format!(
                "invalid event id {text:?}: use the whole number from the id of an event, like 42"
            )
        })
}

fn parse_tail_flag(text: &str) -> Result<TailLines, String> {
    if text == "all" {
        return Ok(TailLines::All);
    }
    text.parse::<usize>()
        .map(TailLines::Last)
        .map_err(|_| format!("invalid line count {text:?}: use a whole number, like 100, or all"))
}

fn parse_since_flag(text: &str) -> Result<String, String> {
    let is_duration = units::parse_duration(text).is_ok();
    let is_time = crate::output::parse_timestamp(text).is_some();
    if is_duration || is_time {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid time {text:?}: use a duration ago, like 10m or 1h30m, or an RFC 3339 time, like 2025-05-01T12:00:00Z"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_takes_the_file_before_or_after_its_subcommand_and_logs_f_follows() {
        let compose = |line: &str| {
            let words: Vec<OsString> = line.split(' ').map(OsString::from).collect();
            match parse_words(&words).expect("parses").command {
                Command::Client(ClientCommand::Compose(arguments)) => arguments.into_inner(),
                _ => panic!("expected compose"),
            }
        };
        let files = |line: &str| compose(line).all_files();
        assert_eq!(
            files("ward compose -f a.yaml up"),
            [PathBuf::from("a.yaml")]
        );
        assert_eq!(
            files("ward compose up -f b.yaml -d"),
            [PathBuf::from("b.yaml")]
        );
        assert_eq!(
            files("ward compose down -v -f c.yaml"),
            [PathBuf::from("c.yaml")]
        );
        assert_eq!(
            files("ward compose logs --file d.yaml -f web"),
            [PathBuf::from("d.yaml")]
        );
        match compose("ward compose logs -f web").command {
            ComposeCommand::Logs {
                follow, services, ..
            } => assert!(follow && services == ["web"]),
            _ => panic!("expected logs"),
        }
    }

    #[test]
    fn command_line_definition_is_consistent() {
        CommandLine::command().debug_assert();
    }

    #[test]
    fn clap_error_paragraphs_become_one_line_with_tips_and_help_pointer() {
        let rendered = "error: unexpected argument '--folow' found\n\n  tip: a similar argument exists: '--follow'\n\nUsage: ward logs --follow <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_usage_error(rendered, Some("logs")),
            "unexpected argument '--folow' found (a similar argument exists: '--follow'); see 'ward logs --help'"
        );
    }

    #[test]
    fn missing_arguments_are_joined_onto_the_first_line() {
        let rendered = "error: the following required arguments were not provided:\n  <NAME>\n\nUsage: ward logs <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_usage_error(rendered, None),
            "the following required arguments were not provided: <NAME>; see 'ward logs --help'"
        );
    }

    #[test]
    fn value_errors_without_usage_point_at_the_subcommand_help() {
        let rendered = "error: invalid value '12XB' for '--memory <SIZE>': invalid size \"12XB\"\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_usage_error(rendered, Some("run")),
            "invalid value '12XB' for '--memory <SIZE>': invalid size \"12XB\"; see 'ward run --help'"
        );
        let arguments = |words: &[&str]| {
            words
                .iter()
                .map(|word| word.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            subcommand_named_in(&arguments(&["--host", "run", "run", "--memory", "1"])).as_deref(),
            Some("run")
        );
        assert_eq!(
            subcommand_named_in(&arguments(&["-o", "json", "ls"])).as_deref(),
            Some("ps")
        );
        assert_eq!(subcommand_named_in(&arguments(&["bogus"])), None);
    }

    #[test]
    fn options_before_and_after_the_subcommand_merge_with_the_inner_ones_winning() {
        let command_line = CommandLine::try_parse_from([
            "ward",
            "--host",
            "http://outer:1",
            "--project",
            "outer",
            "ps",
            "--host",
            "http://inner:2",
        ])
        .expect("parses");
        let Command::Client(ClientCommand::Ps(arguments)) = command_line.command else {
            panic!("expected ps")
        };
        let merged = arguments
            .into_inner()
            .client_options
            .merged_with(&command_line.global_options);
        assert_eq!(merged.host.as_deref(), Some("http://inner:2"));
        assert_eq!(merged.project.as_deref(), Some("outer"));
    }

    #[test]
    fn run_takes_everything_after_the_first_command_word_as_the_command() {
        let command_line = CommandLine::try_parse_from([
            "ward",
            "run",
            "--name",
            "web",
            "python3",
            "-m",
            "http.server",
            "--cpus",
            "1",
        ])
        .expect("parses");
        let Command::Client(ClientCommand::Run(arguments)) = command_line.command else {
            panic!("expected run")
        };
        assert_eq!(
            arguments.command,
            ["python3", "-m", "http.server", "--cpus", "1"]
        );
        assert_eq!(arguments.client_options.output, None);
    }

    #[test]
    fn exec_accepts_the_command_with_or_without_double_dash() {
        for arguments in [
            vec!["ward", "exec", "-it", "web", "--", "ls", "-la"],
            vec!["ward", "exec", "-it", "web", "ls", "-la"],
        ] {
            let command_line = CommandLine::try_parse_from(arguments).expect("parses");
            let Command::Client(ClientCommand::Exec(exec)) = command_line.command else {
                panic!("expected exec")
            };
            assert!(exec.interactive && exec.tty);
            assert_eq!(exec.name, "web");
            assert_eq!(exec.command, ["ls", "-la"]);
        }
    }
}
