//! `ward inspect NAME...`: the normalised document as pretty JSON; an object for one name, an
//! array for several.

use crate::cli::InspectArgs;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, arguments: InspectArgs) -> anyhow::Result<i32> {
    let mut documents = Vec::with_capacity(arguments.names.len());
    let mut first_error = None;
    for name in &arguments.names {
        match context.client.get_workload(name).await {
            Ok(document) => documents.push(document),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    // Like `docker inspect`: print what was found, then fail for what was not.
    if !documents.is_empty() {
        output::print_json_one_or_many(&documents)?;
    }
    match first_error {
        Some(error) => Err(error.into()),
        None => Ok(0),
    }
}
