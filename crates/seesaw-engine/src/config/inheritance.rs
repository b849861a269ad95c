//! Config files as TOML tables: the defaults, the check that every key exists, `--set`
//! overrides, and mmdetection-style `_base_` inheritance (bases merged in order, a file's own
//! keys on top, two bases setting one key or a cycle refused).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::Config;
use crate::error::{EngineError, Result};

/// The default config as a TOML table: what every key is checked against and merged onto.
pub(super) fn defaults_table() -> Result<toml::Table> {
    toml::Table::try_from(Config::default())
        .map_err(|e| EngineError::Request(format!("default config: {e}")))
}

/// Every settable key (`model.rpn.train.nms_pre`, ...), sorted.
pub fn valid_keys() -> Result<Vec<String>> {
    fn walk(t: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(sub) => walk(sub, &key, out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&defaults_table()?, "", &mut out);
    Ok(out.into_iter().collect())
}

/// Checks that every key of `user` exists in `defaults` (recursively).
pub(super) fn check_keys(
    user: &toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    file: &Path,
) -> Result<()> {
    for (k, v) in user {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (defaults.get(k), v) {
            (None, _) => {
                let valid: Vec<String> = valid_keys()?
                    .into_iter()
                    .filter(|x| prefix.is_empty() || x.starts_with(&format!("{prefix}.")))
                    .collect();
                return Err(EngineError::config(
                    file,
                    format!("unknown key `{key}`; valid keys: {}", valid.join(", ")),
                ));
            }
            (Some(toml::Value::Table(d)), toml::Value::Table(u)) => {
                check_keys(u, d, &key, file)?;
            }
            (Some(toml::Value::Table(_)), _) => {
                return Err(EngineError::config(
                    file,
                    format!("`{key}` is a section; set its keys (`{key}.<name>`)"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Rewrites the values a config may give in short for a section: `data.instaboost = 0.5` is
/// `data.instaboost = { aug_ratio = 0.5 }` (mmdetection's other InstaBoost settings).
pub(super) fn expand_shorthands(table: &mut toml::Table) {
    if let Some(toml::Value::Table(data)) = table.get_mut("data")
        && let Some(v @ (toml::Value::Float(_) | toml::Value::Integer(_))) =
            data.get_mut("instaboost")
    {
        let mut t = toml::Table::new();
        t.insert("aug_ratio".into(), v.clone());
        *v = toml::Value::Table(t);
    }
}

pub(super) fn merge(dst: &mut toml::Table, src: toml::Table) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

/// Applies one `a.b.c=value` override; `value` is read as TOML (`1e-3`, `[1, 2]`, `true`,
/// `"x"`), or as a bare string when it is not TOML.
pub fn apply_set(table: &mut toml::Table, set: &str) -> Result<()> {
    let here = Path::new("--set");
    let (key, raw) = set
        .split_once('=')
        .ok_or_else(|| EngineError::config(here, format!("`{set}` is not key=value")))?;
    let key = key.trim();
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(sub) => sub,
            _ => {
                return Err(EngineError::config(
                    here,
                    format!("`{key}`: `{p}` is not a section"),
                ));
            }
        };
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// The key `_base_` names the files a config inherits from (mmdetection's `_base_`).
const BASE_KEY: &str = "_base_";

/// A leaf key set in both `a` and `b`, if any.
fn overlap(a: &toml::Table, b: &toml::Table, prefix: &str) -> Option<String> {
    a.iter().find_map(|(k, va)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (va, b.get(k)?) {
            (toml::Value::Table(x), toml::Value::Table(y)) => overlap(x, y, &key),
            _ => Some(key),
        }
    })
}

/// Parses `text` (the contents of `file`) and resolves its `_base_` files, relative to
/// `file`'s folder: each base's keys (its own bases first), then the file's own keys on top.
/// Two bases may not set the same key (as in mmdetection). `chain` holds the files being
/// resolved, to refuse a cycle.
pub(super) fn resolve(text: &str, file: &Path, chain: &mut Vec<PathBuf>) -> Result<toml::Table> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| EngineError::config(file, e.to_string()))?;
    let bases: Vec<String> = match table.remove(BASE_KEY) {
        None => vec![],
        Some(toml::Value::String(b)) => vec![b],
        Some(toml::Value::Array(list)) => list
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                toml::Value::String(b) => Ok(b),
                other => Err(EngineError::config(
                    file,
                    format!("`{BASE_KEY}[{i}]` must be a file name, got {other}"),
                )),
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(EngineError::config(
                file,
                format!("`{BASE_KEY}` must be a file name or a list of them, got {other}"),
            ));
        }
    };
    expand_shorthands(&mut table);
    check_keys(&table, &defaults_table()?, "", file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut inherited = toml::Table::new();
    for base in bases {
        let path = dir.join(&base);
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if chain.contains(&canonical) {
            let names: Vec<String> = chain.iter().map(|p| p.display().to_string()).collect();
            return Err(EngineError::config(
                file,
                format!(
                    "`{BASE_KEY}` {base:?} makes a cycle ({} -> {})",
                    names.join(" -> "),
                    canonical.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            EngineError::io(
                &path,
                &format!("cannot read the base config of {}", file.display()),
                e,
            )
        })?;
        chain.push(canonical);
        let t = resolve(&text, &path, chain)?;
        chain.pop();
        if let Some(key) = overlap(&inherited, &t, "") {
            return Err(EngineError::config(
                file,
                format!("two of its bases set `{key}`; set it in one base or in this file"),
            ));
        }
        merge(&mut inherited, t);
    }
    merge(&mut inherited, table);
    Ok(inherited)
}
