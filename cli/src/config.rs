//! Where the API is and which key to send: a flag, else the environment (`IMGPIPE_API_URL`,
//! `IMGPIPE_API_KEY`), else a profile of the config file (`IMGPIPE_CONFIG`, or `imgpipe/config.toml`
//! in the user's config directory). The profile is `--profile`, else `IMGPIPE_PROFILE`, else
//! the file's `default_profile`, else `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::errors::CliError;

/// The config file: named profiles, and which one is used when none is named.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfigFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub api_url: Option<String>,
    pub api_key: Option<String>,
}

/// What one source says: the flags, the environment, each as read.
#[derive(Debug, Default, Clone)]
pub struct Given {
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    pub profile: Option<String>,
}

/// The API to call and the key to send.
#[derive(Debug, PartialEq)]
pub struct Settings {
    pub api_url: String,
    pub api_key: String,
}

const DEFAULT_PROFILE: &str = "default";

/// The config file's path: `IMGPIPE_CONFIG` when set, else the user's config directory.
pub fn config_path(from_env: Option<PathBuf>) -> Result<PathBuf, CliError> {
    from_env.or_else(|| dirs::config_dir().map(|dir| dir.join("imgpipe").join("config.toml"))).ok_or_else(|| {
        CliError::Usage("no config directory on this system: set IMGPIPE_CONFIG to a config file's path".into())
    })
}

/// The file at `path`, or an empty one when there is none.
pub fn read_file(path: &Path) -> Result<ConfigFile, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(error) => return Err(CliError::File(format!("cannot read the config file {}: {error}", path.display()))),
    };
    toml::from_str(&text).map_err(|error| {
        let detail = error.message();
        CliError::Usage(format!("the config file {} is not valid: {detail}", path.display()))
    })
}

/// Flags first, then the environment, then the chosen profile of the file.
pub fn resolve(flags: &Given, env: &Given, file: &ConfigFile, path: &Path) -> Result<Settings, CliError> {
    let named = flags.profile.as_ref().or(env.profile.as_ref());
    let name = named.or(file.default_profile.as_ref()).map_or(DEFAULT_PROFILE, String::as_str);
    let profile = match file.profiles.get(name) {
        Some(profile) => profile.clone(),
        None if named.is_some() => {
            return Err(CliError::Usage(format!("no profile `{name}` in the config file {}", path.display())));
        }
        None => Profile::default(),
    };
    let pick = |flag: &Option<String>, env: &Option<String>, file: &Option<String>| {
        flag.clone().or_else(|| env.clone()).or_else(|| file.clone()).filter(|value| !value.trim().is_empty())
    };
    let missing = |what: &str, flag: &str, var: &str| {
        CliError::Usage(format!(
            "no {what}: pass {flag}, set {var} or add it to profile `{name}` of {} (imgpipe configure)",
            path.display()
        ))
    };
    let api_url = pick(&flags.api_url, &env.api_url, &profile.api_url)
        .ok_or_else(|| missing("API URL", "--api-url", "IMGPIPE_API_URL"))?;
    let api_key = pick(&flags.api_key, &env.api_key, &profile.api_key)
        .ok_or_else(|| missing("API key", "--api-key", "IMGPIPE_API_KEY"))?;
    Ok(Settings { api_url: api_url.trim_end_matches('/').to_string(), api_key })
}

/// Writes `profile` as `name` into the file at `path` (created, readable by its owner only: it
/// holds a key); it becomes the default when asked or when the file has no default yet.
pub fn save_profile(path: &Path, name: &str, profile: Profile, make_default: bool) -> Result<(), CliError> {
    let mut file = read_file(path)?;
    file.profiles.insert(name.to_string(), profile);
    if make_default || file.default_profile.is_none() {
        file.default_profile = Some(name.to_string());
    }
    let text = toml::to_string(&file).map_err(|error| CliError::File(format!("cannot write the config: {error}")))?;
    let cannot = |error: std::io::Error| CliError::File(format!("cannot write {}: {error}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(cannot)?;
    }
    write_private(path, text.as_bytes()).map_err(cannot)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(api_url: Option<&str>, api_key: Option<&str>, profile: Option<&str>) -> Given {
        Given { api_url: api_url.map(Into::into), api_key: api_key.map(Into::into), profile: profile.map(Into::into) }
    }

    fn file() -> ConfigFile {
        toml::from_str(
            r#"
            default_profile = "local"
            [profiles.local]
            api_url = "http://local.example/"
            api_key = "ik_local"
            [profiles.prod]
            api_url = "https://prod.example"
            api_key = "ik_prod"
            "#,
        )
        .unwrap()
    }

    fn settings(url: &str, key: &str) -> Settings {
        Settings { api_url: url.into(), api_key: key.into() }
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let path = Path::new("config.toml");
        let none = Given::default();
        let resolved = |flags: &Given, env: &Given| resolve(flags, env, &file(), path).unwrap();
        assert_eq!(resolved(&none, &none), settings("http://local.example", "ik_local"), "the default profile");
        let env = given(Some("http://env.example"), Some("ik_env"), None);
        assert_eq!(resolved(&none, &env), settings("http://env.example", "ik_env"));
        let flags = given(Some("http://flag.example"), None, None);
        assert_eq!(resolved(&flags, &env), settings("http://flag.example", "ik_env"), "each setting on its own");
        assert_eq!(resolved(&given(None, None, Some("prod")), &none), settings("https://prod.example", "ik_prod"));
        assert_eq!(
            resolved(&given(None, None, Some("prod")), &given(None, None, Some("local"))).api_key,
            "ik_prod",
            "--profile wins over IMGPIPE_PROFILE"
        );
        assert_eq!(resolved(&none, &given(None, None, Some("prod"))).api_key, "ik_prod", "IMGPIPE_PROFILE");
    }

    #[test]
    fn what_is_missing_is_named_with_where_to_put_it() {
        let path = Path::new("/home/u/.config/imgpipe/config.toml");
        let none = Given::default();
        let error = resolve(&none, &none, &ConfigFile::default(), path).unwrap_err();
        assert!(matches!(error, CliError::Usage(_)));
        assert_eq!(
            error.to_string(),
            "no API URL: pass --api-url, set IMGPIPE_API_URL or add it to profile `default` of \
             /home/u/.config/imgpipe/config.toml (imgpipe configure)"
        );
        let only_url = given(Some("http://x"), None, None);
        assert!(
            resolve(&only_url, &none, &ConfigFile::default(), path).unwrap_err().to_string().starts_with("no API key")
        );
        let unknown = resolve(&given(None, None, Some("staging")), &none, &file(), path).unwrap_err();
        assert_eq!(unknown.to_string(), "no profile `staging` in the config file /home/u/.config/imgpipe/config.toml");
    }

    #[test]
    fn a_saved_profile_reads_back_and_becomes_the_default_only_when_there_is_none() {
        let dir = std::env::temp_dir().join(format!("imgpipe-cli-config-{}", std::process::id()));
        let path = dir.join("nested").join("config.toml");
        let local = Profile { api_url: Some("http://local".into()), api_key: Some("ik_1".into()) };
        save_profile(&path, "local", local.clone(), false).unwrap();
        let prod = Profile { api_url: Some("https://prod".into()), api_key: Some("ik_2".into()) };
        save_profile(&path, "prod", prod.clone(), false).unwrap();
        let saved = read_file(&path).unwrap();
        assert_eq!(saved.default_profile.as_deref(), Some("local"));
        assert_eq!(saved.profiles["local"], local);
        assert_eq!(saved.profiles["prod"], prod);
        save_profile(&path, "prod", prod, true).unwrap();
        assert_eq!(read_file(&path).unwrap().default_profile.as_deref(), Some("prod"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "it holds keys");
        }
        std::fs::write(&path, "profiles = 3").unwrap();
        assert!(read_file(&path).unwrap_err().to_string().contains("is not valid"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
