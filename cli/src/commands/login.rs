//! `rbuild login [HOST] -u USER --password-stdin` and `rbuild logout [HOST]`, as
//! `docker login/logout` without a credential helper: the credentials are checked against the
//! registry first (`GET /v2/` with them), then saved in the `auths` of the Docker config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), which builds and pushes read.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use rbuild::registry::{
    registry_host, Credentials, CredentialsSource, DockerConfig, RegistryClient, RegistryOptions,
    DOCKER_HUB_DOMAIN,
};

use crate::args::{LoginArgs, LogoutArgs};
use crate::env;
use crate::report::CliError;

/// Run `rbuild login`.
pub fn login(args: &LoginArgs) -> Result<(), CliError> {
    let host = args.host.as_deref().unwrap_or(DOCKER_HUB_DOMAIN);
    let config = config_path()?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|source| CliError::Io {
            op: "read the password from",
            path: PathBuf::from("stdin"),
            source,
        })?;
    // `echo pw | rbuild login …` adds a newline that is not part of the password.
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(CliError::Usage(
            "the password read from stdin is empty".into(),
        ));
    }
    let creds = Credentials {
        username: args.username.clone(),
        password,
    };
    let client = RegistryClient::new(RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        credentials: CredentialsSource::Static(BTreeMap::from([(host.to_string(), creds.clone())])),
        ..RegistryOptions::default()
    });
    client.ping(registry_host(host))?;
    DockerConfig::save_login(&config, host, &creds)?;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "login succeeded for {host} (saved in {})",
        config.display()
    );
    Ok(())
}

/// Run `rbuild logout`.
pub fn logout(args: &LogoutArgs) -> Result<(), CliError> {
    let host = args.host.as_deref().unwrap_or(DOCKER_HUB_DOMAIN);
    let config = config_path()?;
    let removed = DockerConfig::remove_login(&config, host)?;
    let mut stderr = std::io::stderr().lock();
    let _ = if removed {
        writeln!(stderr, "removed login credentials for {host}")
    } else {
        writeln!(stderr, "not logged in to {host}")
    };
    Ok(())
}

fn config_path() -> Result<PathBuf, CliError> {
    env::docker_config().ok_or_else(|| {
        CliError::Usage("cannot find the Docker config: set $DOCKER_CONFIG or $HOME".into())
    })
}
