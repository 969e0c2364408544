//! Layered settings for every service, lowest precedence first:
//!
//! 1. `config/base.yaml`
//! 2. `config/<environment>.yaml` (environment from `--environment` or `APP_ENVIRONMENT`, default
//!    `local`; the file is optional)
//! 3. environment variables with the `APP_` prefix and `__` for nesting
//!    (`APP_DATABASE__MAX_CONNECTIONS=20` sets `database.max_connections`)
//! 4. command-line flags, which each service declares with clap and hands over as overrides
//!
//! The result is deserialised into the service's own typed `Settings`. Secret values are typed as
//! [`Secret`], which never prints its content in `Debug` output or logs.

use anyhow::Context;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use secrecy::{ExposeSecret, SecretString as Secret};

/// Prefix of the environment variables read as settings.
pub const ENV_PREFIX: &str = "APP";

// ANCHOR: config_args
/// The flags every service shares: where its config files are and which environment it runs in.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Folder holding base.yaml and <environment>.yaml [default: ./config, else the crate's config/]
    #[arg(long, env = "APP_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Environment whose <environment>.yaml is layered over base.yaml
    #[arg(long, env = "APP_ENVIRONMENT", default_value = "local")]
    pub environment: String,
}
// ANCHOR_END: config_args

impl ConfigArgs {
    /// The config folder: the flag, else `./config` when it exists, else `fallback` (a service passes
    /// `crate_dir!().join("config")` so `cargo run -p NAME` works from anywhere).
    pub fn dir_or(&self, fallback: impl Into<PathBuf>) -> PathBuf {
        match &self.config_dir {
            Some(dir) => dir.clone(),
            None if Path::new("config/base.yaml").is_file() => PathBuf::from("config"),
            None => fallback.into(),
        }
    }
}

// ANCHOR: crate_dir
/// The calling crate's folder: under `cargo run` and `cargo test` the one cargo names at run time,
/// else the one it was compiled in.
///
/// `env!("CARGO_MANIFEST_DIR")` alone is the folder of whichever checkout compiled the binary, and
/// cargo does not recompile a workspace crate when only the checkout's path changed: two checkouts
/// sharing one target directory (a CI clone and a working copy) would read each other's files.
/// The run-time value is used only when it names the same package, so a process started by
/// another package's tests (which inherits that package's variables) keeps its own folder.
#[macro_export]
macro_rules! crate_dir {
    () => {
        $crate::crate_dir_of(env!("CARGO_PKG_NAME"), env!("CARGO_MANIFEST_DIR"))
    };
}

/// See [`crate_dir!`]: `package`'s folder, `compiled_in` unless cargo names it at run time.
pub fn crate_dir_of(package: &str, compiled_in: &str) -> PathBuf {
    match (std::env::var("CARGO_PKG_NAME"), std::env::var_os("CARGO_MANIFEST_DIR")) {
        (Ok(name), Some(dir)) if name == package => dir.into(),
        _ => compiled_in.into(),
    }
}
// ANCHOR_END: crate_dir

// ANCHOR: workspace_dir
/// The workspace's root folder, for the files a test or a tool reads outside its own crate
/// (scripts, other crates' config, manifests). Found upwards from, in order: the folder cargo
/// names at run time (see [`crate_dir!`] for why not the compiled-in one); the working folder,
/// for binaries started outside cargo (the scripts `cd` to the checkout first); the folder this
/// crate was compiled in.
///
/// # Panics
/// When none of them lies in a workspace: nothing a caller could read would be there.
pub fn workspace_dir() -> PathBuf {
    let run_time = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let working = std::env::current_dir().ok();
    let compiled = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    [run_time, working, compiled]
        .into_iter()
        .flatten()
        .find_map(|start| workspace_root_from(&start))
        .unwrap_or_else(|| panic!("no Cargo workspace above the run-time, working or compiled-in folder"))
}
// ANCHOR_END: workspace_dir

/// The first folder from `start` upwards whose `Cargo.toml` has a `[workspace]` table.
fn workspace_root_from(start: &Path) -> Option<PathBuf> {
    let declares_workspace = |dir: &Path| {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|toml| toml.lines().any(|line| line.trim() == "[workspace]"))
    };
    start.ancestors().find(|dir| declares_workspace(dir)).map(Path::to_path_buf)
}

/// Everything [`load`] layers, in precedence order.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Folder holding `base.yaml` and `<environment>.yaml`.
    pub dir: PathBuf,
    /// Name of the environment file to layer over `base.yaml`.
    pub environment: String,
    /// Environment variables to read; `None` reads the process environment. Tests pass a map so
    /// they never mutate the process environment (which is `unsafe` and racy).
    pub env: Option<HashMap<String, String>>,
    /// Highest-precedence values, usually from CLI flags: (dotted key, value).
    pub overrides: Vec<(String, String)>,
}

impl Sources {
    /// Sources for `dir` and `environment`, reading the process environment.
    pub fn new(dir: impl Into<PathBuf>, environment: impl Into<String>) -> Self {
        Self { dir: dir.into(), environment: environment.into(), ..Self::default() }
    }

    /// Adds a flag's value when it was given.
    pub fn override_with(mut self, key: &str, value: Option<impl ToString>) -> Self {
        if let Some(v) = value {
            self.overrides.push((key.to_owned(), v.to_string()));
        }
        self
    }
}

// ANCHOR: load
/// Layers the sources and deserialises them into `T`; the error names the file or key at fault.
pub fn load<T: DeserializeOwned>(sources: &Sources) -> anyhow::Result<T> {
    let base = sources.dir.join("base.yaml");
    anyhow::ensure!(base.is_file(), "config file {} not found (set --config-dir)", base.display());
    let mut builder = config::Config::builder()
        .add_source(config::File::from(base))
        .add_source(
            config::File::from(sources.dir.join(format!("{}.yaml", sources.environment))).required(false),
        )
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(sources.env.clone()),
        );
    for (key, value) in &sources.overrides {
        builder =
            builder.set_override(key.as_str(), value.as_str()).with_context(|| format!("override {key}"))?;
    }
    builder
        .build()
        .context("reading configuration")?
        .try_deserialize()
        .with_context(|| format!("invalid configuration in {} or APP_* variables", sources.dir.display()))
}
// ANCHOR_END: load

/// Loads `T` from the config folder `dir` and `environment`, with `env` as the only environment
/// variables: for a service's tests of its own config files (they never touch the process
/// environment).
pub fn load_with_env<T: DeserializeOwned>(
    dir: &str,
    environment: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<T> {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    load(&Sources { env: Some(env), ..Sources::new(dir, environment) })
}

/// For a service's tests of its own config files: every one of `environments` loads, and setting
/// each of the `misspelt` variables (e.g. `APP_HTTP__PROT`) is an error that names the key.
pub fn check_config_files<T: DeserializeOwned>(dir: &str, environments: &[&str], misspelt: &[&str]) {
    for environment in environments {
        if let Err(e) = load_with_env::<T>(dir, environment, &[]) {
            panic!("{environment}.yaml: {e:#}");
        }
    }
    for key in misspelt {
        let name = key.rsplit("__").next().unwrap_or(key).to_lowercase();
        match load_with_env::<T>(dir, environments.first().copied().unwrap_or("local"), &[(key, "1")]) {
            Ok(_) => panic!("{key} was accepted"),
            Err(e) => {
                assert!(format!("{e:#}").contains(&name), "{key}: the error does not name {name}: {e:#}")
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_crate_dir_is_the_one_cargo_runs_us_in_and_only_for_our_own_package() {
        // `cargo test` names this package's folder at run time: it wins over a stale compiled-in one.
        let here = crate_dir_of(env!("CARGO_PKG_NAME"), "/a/checkout/that/is/gone");
        assert!(here.join("src/lib.rs").is_file(), "{}", here.display());
        // A process of another package (inheriting our variables) keeps its compiled-in folder.
        assert_eq!(crate_dir_of("another-package", "/compiled/in"), PathBuf::from("/compiled/in"));
        assert_eq!(crate_dir!(), here);
    }

    #[test]
    fn the_workspace_root_is_the_first_folder_up_with_a_workspace_table() {
        let tmp = std::env::temp_dir().join(format!("cruncan-ws-{}", std::process::id()));
        let member = tmp.join("ws/crates/member");
        std::fs::create_dir_all(&member).unwrap();
        std::fs::write(tmp.join("ws/Cargo.toml"), "[workspace]\nmembers = [\"crates/member\"]\n").unwrap();
        // A mention in a comment or a `[workspace.*]` table does not make a workspace root.
        std::fs::write(member.join("Cargo.toml"), "# not a [workspace]\n[workspace.lints]\n").unwrap();
        assert_eq!(workspace_root_from(&member), Some(tmp.join("ws")));
        assert_eq!(workspace_root_from(&tmp), None);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_workspace_dir_is_the_checkout_that_runs_us() {
        let root = workspace_dir();
        let toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(toml.contains("[workspace]"), "{}", root.display());
        assert_eq!(root.join("pkg/config"), crate_dir!(), "the run-time folder's checkout");
    }

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Settings {
        http: Http,
        database: Database,
        name: String,
    }

    #[derive(Debug, Deserialize)]
    struct Http {
        port: u16,
        host: String,
    }

    #[derive(Debug, Deserialize)]
    struct Database {
        password: Secret,
        max_connections: u32,
    }

    fn dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.yaml"),
            "name: base\nhttp: {port: 1, host: base}\ndatabase: {password: hunter2, max_connections: 1}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("test.yaml"), "name: file\nhttp: {port: 2}\n").unwrap();
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn precedence_is_base_then_environment_file_then_env_then_flags() {
        let dir = dir();
        let sources = Sources {
            dir: dir.path().into(),
            environment: "test".into(),
            env: env(&[("APP_HTTP__PORT", "3"), ("APP_DATABASE__MAX_CONNECTIONS", "7"), ("OTHER", "x")]),
            overrides: vec![],
        };
        let s: Settings = load(&sources).unwrap();
        assert_eq!(s.name, "file", "environment file beats base");
        assert_eq!(s.http.host, "base", "keys the file does not name keep their base value");
        assert_eq!(s.http.port, 3, "APP_ env beats the files");
        assert_eq!(s.database.max_connections, 7, "__ nests");

        let s: Settings = load(&sources.override_with("http.port", Some(4))).unwrap();
        assert_eq!(s.http.port, 4, "a flag beats everything");
    }

    #[test]
    fn missing_environment_file_is_fine_and_absent_flag_changes_nothing() {
        let dir = dir();
        let sources = Sources { env: env(&[]), ..Sources::new(dir.path(), "production") }
            .override_with("http.port", None::<u16>);
        let s: Settings = load(&sources).unwrap();
        assert_eq!((s.name.as_str(), s.http.port), ("base", 1));
    }

    #[test]
    fn secrets_never_print() {
        let dir = dir();
        let s: Settings = load(&Sources { env: env(&[]), ..Sources::new(dir.path(), "test") }).unwrap();
        assert_eq!(s.database.password.expose_secret(), "hunter2");
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = dir();
        let missing = load::<Settings>(&Sources::new(dir.path().join("nope"), "test")).unwrap_err();
        assert!(format!("{missing:#}").contains("base.yaml"), "{missing:#}");
        let bad =
            Sources { env: env(&[("APP_HTTP__PORT", "not-a-port")]), ..Sources::new(dir.path(), "test") };
        let err = load::<Settings>(&bad).unwrap_err();
        assert!(format!("{err:#}").contains("port"), "{err:#}");
    }
}
