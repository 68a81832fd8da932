//! Opening the database from the command line: refuse to create a stray SQLite file, and
//! turn driver errors into one line that says which database and what to do.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

use super::Access;
use crate::store::StoreError;

/// The file a `sqlite:` URL names; `None` for other databases.
pub(super) fn sqlite_file(url: &str) -> anyhow::Result<Option<PathBuf>> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("--database-url {url:?}: {e}"))?;
    Ok(Some(options.get_filename().to_path_buf()))
}

/// Checks, before connecting, what SQLite would only report as "unable to open database file".
pub(super) fn check_sqlite_file(path: &Path, access: Access) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    match access {
        Access::Create => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                anyhow::bail!(
                    "cannot create the SQLite database {}: directory {} does not exist (--database-url / UNLOCKD_DATABASE_URL)",
                    path.display(),
                    dir.display()
                );
            }
            Ok(())
        }
        Access::Existing => anyhow::bail!(
            "SQLite database {} does not exist: point --database-url / UNLOCKD_DATABASE_URL at the server's database, or pass --create to create a new one",
            path.display()
        ),
        Access::ReadOnly => anyhow::bail!(
            "SQLite database {} does not exist (--database-url / UNLOCKD_DATABASE_URL)",
            path.display()
        ),
    }
}

/// One line naming the database and the likely cause.
pub(super) fn explain(
    url: &str,
    sqlite_file: Option<&Path>,
    access: Access,
    error: anyhow::Error,
) -> anyhow::Error {
    let text = super::one_line(&error);
    let store_error = error.downcast_ref::<StoreError>();
    if let Some(StoreError::Unreachable(reason)) = store_error {
        return anyhow::anyhow!("{reason} (--database-url / UNLOCKD_DATABASE_URL)");
    }
    let Some(path) = sqlite_file else {
        return anyhow::anyhow!("database {}: {text}", redact_password(url));
    };
    let path = path.display();
    if text.contains("readonly database") || text.contains("read-only") {
        anyhow::anyhow!(
            "SQLite database {path} is read-only and this command writes to it (check the file's and its directory's permissions)"
        )
    } else if let Some(StoreError::Integrity(reason)) = store_error {
        if access == Access::ReadOnly {
            anyhow::anyhow!(
                "SQLite database {path} is not up to date ({reason}): run `unlockd migrate` first"
            )
        } else {
            anyhow::anyhow!("SQLite database {path}: {reason}")
        }
    } else if text.contains("unable to open database file") {
        anyhow::anyhow!("cannot open the SQLite database {path}: {text}")
    } else if text.contains("file is not a database") {
        anyhow::anyhow!("{path} is not a SQLite database")
    } else {
        anyhow::anyhow!("SQLite database {path}: {text}")
    }
}

/// A URL fit for an error message: `postgres://user:secret@host` loses the secret.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:pw@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
    }
}
