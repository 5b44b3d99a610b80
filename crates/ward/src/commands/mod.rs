//! One module per subcommand; [`dispatch`] resolves the client settings and runs the command.

mod access;
mod alert;
mod anomalies;
mod apply;
mod chat;
mod completion;
mod compose;
mod detect;
mod events;
mod exec;
mod image;
mod inspect;
mod lifecycle;
mod login;
mod logs;
mod metrics;
mod model;
mod ps;
mod run;
mod secret;
mod top;
mod volume;

use ward_client::Client;

use crate::cli::{ClientCommand, ClientOptions, Command};
use crate::config::{self, ClientSettings, Environment};
use crate::failure;

/// What every client command works with: the connection and how to print.
pub struct Context {
    pub client: Client,
    pub settings: ClientSettings,
}

impl Context {
    fn new(options: &ClientOptions) -> Context {
        let read_file = |path: &std::path::Path| std::fs::read_to_string(path);
        let settings =
            config::resolve_client_settings(options, &Environment::current(), &read_file);
        let mut client = Client::new(&settings.base_url, settings.token.clone());
        if let Some(project) = &settings.project {
            client = client.with_project(project);
        }
        if let Some(pem) = &settings.ca_certificate {
            // An unusable certificate leaves the client as it was; the call then fails
            // with the TLS error, which says more than this would.
            if let Ok(trusting) = client.clone().with_ca_certificate(pem.as_bytes()) {
                client = trusting;
            }
        }
        Context { client, settings }
    }

    /// `-o json`: print machine-readable JSON instead of tables and names.
    pub fn json(&self) -> bool {
        self.settings.output.is_json()
    }

    /// `-o wide`: tables with their extra columns.
    pub fn wide(&self) -> bool {
        self.settings.output == crate::cli::OutputFormat::Wide
    }
}

/// Runs one command and returns its exit status (the remote command's, for `exec`).
pub async fn dispatch(command: Command, global_options: ClientOptions) -> anyhow::Result<i32> {
    match command {
        Command::Client(client_command) => {
            let options = client_command
                .client_options()
                .clone()
                .merged_with(&global_options);
            let context = Context::new(&options);
            run_client_command(&context, client_command)
                .await
                .map_err(|error| failure::explain(error, &context.settings))
        }
        Command::Serve(arguments) => {
            let mut arguments = arguments.into_inner();
            if arguments.data_dir.is_none() {
                arguments.data_dir = global_options.data_dir;
            }
            crate::serve::run(arguments).await?;
            Ok(0)
        }
        Command::Completion(arguments) => completion::run(&arguments),
        Command::Detect(arguments) => detect::run(&arguments),
        Command::Forecast(arguments)
            if arguments.name.is_some() || detect::is_host_metric(&arguments.metric) =>
        {
            let options = arguments
                .client_options
                .clone()
                .merged_with(&global_options);
            let context = Context::new(&options);
            detect::forecast_workload(&context, &arguments)
                .await
                .map_err(|error| failure::explain(error, &context.settings))
        }
        Command::Forecast(arguments) => detect::forecast(&arguments),
    }
}

async fn run_client_command(context: &Context, command: ClientCommand) -> anyhow::Result<i32> {
    match command {
        ClientCommand::Run(arguments) => run::run(context, *arguments.into_inner()).await,
        ClientCommand::Apply(arguments) => apply::run(context, arguments.into_inner()).await,
        ClientCommand::Compose(arguments) => compose::run(context, arguments.into_inner()).await,
        ClientCommand::Ps(arguments) => ps::run(context, arguments.into_inner()).await,
        ClientCommand::Inspect(arguments) => inspect::run(context, arguments.into_inner()).await,
        ClientCommand::Logs(arguments) => logs::run(context, arguments.into_inner()).await,
        ClientCommand::Start(arguments) => {
            lifecycle::act(context, &arguments.names, lifecycle::Action::Start).await
        }
        ClientCommand::Stop(arguments) => {
            let action = lifecycle::Action::Stop(arguments.time);
            lifecycle::act(context, &arguments.names, action).await
        }
        ClientCommand::Kill(arguments) => {
            let arguments = arguments.into_inner();
            let action = lifecycle::Action::Kill(arguments.signal);
            lifecycle::act(context, &arguments.names, action).await
        }
        ClientCommand::Restart(arguments) => {
            lifecycle::act(context, &arguments.names, lifecycle::Action::Restart).await
        }
        ClientCommand::Rm(arguments) => {
            lifecycle::remove(context, &arguments.names, arguments.force).await
        }
        ClientCommand::Exec(arguments) => exec::run(context, arguments.into_inner()).await,
        ClientCommand::Attach(arguments) => {
            exec::attach(context, &arguments.name, arguments.replica).await
        }
        ClientCommand::Events(arguments) => events::run(context, arguments.into_inner()).await,
        ClientCommand::Metrics(arguments) => metrics::run(context, arguments.into_inner()).await,
        ClientCommand::Anomalies(arguments) => {
            anomalies::run(context, arguments.into_inner()).await
        }
        ClientCommand::Top(arguments) => top::run(context, arguments.into_inner()).await,
        ClientCommand::Stats(arguments) => {
            let arguments = arguments.into_inner();
            let once = crate::cli::TopArgs {
                once: true,
                interval: std::time::Duration::from_secs(1),
                all: arguments.all,
                client_options: arguments.client_options,
            };
            top::run(context, once).await
        }
        ClientCommand::Image(arguments) => {
            image::run(context, arguments.into_inner().command).await
        }
        ClientCommand::Volume(arguments) => {
            volume::run(context, arguments.into_inner().command).await
        }
        ClientCommand::Model(arguments) => {
            model::run(context, arguments.into_inner().command).await
        }
        ClientCommand::Chat(arguments) => chat::run(context, arguments.into_inner()).await,
        ClientCommand::Login(arguments) => login::login(context, arguments.into_inner()).await,
        ClientCommand::Logout(arguments) => login::logout(context, arguments.into_inner()).await,
        ClientCommand::Key(arguments) => access::key(context, arguments.into_inner().command).await,
        ClientCommand::Audit(arguments) => {
            access::audit(context, arguments.into_inner().command).await
        }
        ClientCommand::Project(arguments) => {
            access::project(context, arguments.into_inner().command).await
        }
        ClientCommand::Quota(arguments) => {
            access::quota(context, arguments.into_inner().command).await
        }
        ClientCommand::User(arguments) => {
            login::user(context, arguments.into_inner().command).await
        }
        ClientCommand::Secret(arguments) => {
            secret::run(context, arguments.into_inner().command).await
        }
        ClientCommand::Alert(arguments) => {
            alert::run(context, arguments.into_inner().command).await
        }
    }
}
