//! `--config FILE` (or `SKUFLOW_CONFIG`): a TOML file of flag values for the subcommand,
//! `key = value` with the flags' long names (`batch-max = 500`, `api-key = ["..."]`).
//! Precedence, lowest first: built-in defaults, the file, `SKUFLOW_*` variables, flags.
//! The file's values become flags placed before the user's, for every key whose flag the
//! user did not give and whose variable is not set; clap then validates them like any
//! flag, so a typo in the file is an error, not a silent default.

use std::ffi::OsString;

use clap::CommandFactory;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {0}: {1}")]
    Read(String, std::io::Error),
    #[error("parsing {0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("{file}: `{key}` is not a flag of `skuflow {subcommand}`")]
    UnknownKey { file: String, key: String, subcommand: String },
    #[error("{file}: `{key}` must be a string, number, boolean or array of those")]
    BadValue { file: String, key: String },
}

/// The arguments with the config file's values spliced in (unchanged without a file).
pub fn expand<C: CommandFactory>(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    let strings: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let (path, rest) = take_config(&strings);
    let Some(path) = path.or_else(|| std::env::var("SKUFLOW_CONFIG").ok()) else {
        return Ok(args);
    };
    let Some(subcommand) = rest.get(1).cloned() else {
        return Ok(rest.into_iter().map(Into::into).collect());
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| ConfigFileError::Read(path.clone(), e))?;
    let table: toml::Table = text.parse().map_err(|e| ConfigFileError::Parse(path.clone(), e))?;
    let command = C::command();
    let sub = command.find_subcommand(&subcommand).cloned().unwrap_or(command);
    let mut injected = Vec::new();
    for (key, value) in table {
        let arg =
            sub.get_arguments().find(|a| a.get_long() == Some(key.as_str())).ok_or_else(|| {
                ConfigFileError::UnknownKey {
                    file: path.clone(),
                    key: key.clone(),
                    subcommand: subcommand.clone(),
                }
            })?;
        let flag = format!("--{key}");
        let given = rest.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let from_env = arg.get_env().is_some_and(|name| std::env::var_os(name).is_some());
        if given || from_env {
            continue;
        }
        let bad = || ConfigFileError::BadValue { file: path.clone(), key: key.clone() };
        let values = match value {
            toml::Value::Array(items) => {
                items.into_iter().map(scalar).collect::<Option<Vec<_>>>().ok_or_else(bad)?
            }
            v => vec![scalar(v).ok_or_else(bad)?],
        };
        for v in values {
            match v.as_str() {
                "true" if !arg.get_action().takes_values() => injected.push(flag.clone()),
                "false" if !arg.get_action().takes_values() => {}
                _ => injected.extend([flag.clone(), v]),
            }
        }
    }
    let mut out: Vec<String> = rest[..2].to_vec();
    out.extend(injected);
    out.extend(rest[2..].iter().cloned());
    Ok(out.into_iter().map(Into::into).collect())
}

fn scalar(v: toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Remove `--config FILE` / `--config=FILE` from the arguments; return the path.
fn take_config(args: &[String]) -> (Option<String>, Vec<String>) {
    let (mut path, mut rest, mut it) = (None, Vec::new(), args.iter());
    while let Some(a) = it.next() {
        if a == "--config" {
            path = it.next().cloned();
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_owned());
        } else {
            rest.push(a.clone());
        }
    }
    (path, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn file_values_yield_to_flags_and_reach_clap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skuflow.toml");
        std::fs::write(&file, "batch-max = 500\ninstance = \"p-7\"\nsync-store = true\n").unwrap();
        let args =
            ["skuflow", "processor", "--config", file.to_str().unwrap(), "--instance", "p-9"];
        let out = strings(expand::<Cli>(args.iter().map(Into::into).collect()).unwrap());
        assert_eq!(
            out,
            ["skuflow", "processor", "--batch-max", "500", "--sync-store", "--instance", "p-9"]
        );
        let cli = <Cli as clap::Parser>::try_parse_from(out).unwrap();
        let crate::Command::Processor(p) = cli.command else { panic!("processor") };
        assert_eq!((p.processor.batch_max, p.processor.instance.as_str()), (500, "p-9"));
        assert!(p.processor.sync_store);
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "batch-maxx = 5\n").unwrap();
        let args = ["skuflow", "processor", "--config", file.to_str().unwrap()];
        let err = expand::<Cli>(args.iter().map(Into::into).collect()).unwrap_err();
        assert!(err.to_string().contains("batch-maxx"), "{err}");
    }
}
