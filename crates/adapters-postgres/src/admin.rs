//! Cluster-level chores on the maintenance database: creating and dropping databases.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// Replaces the database name in a `postgres://` URL (keeping any query string).
///
/// # Errors
/// A URL without a path segment for the database.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let slash = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .ok_or_else(|| anyhow::anyhow!("database URL has no database name"))?;
    let mut out = format!("{}/{database}", &base[..slash]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// A database name safe to splice into DDL (we generate them; this is a guard).
///
/// # Errors
/// Names with anything but `[a-z0-9_]`.
pub fn checked_ident(name: &str) -> anyhow::Result<&str> {
    let ok = !name.is_empty()
        && name.len() < 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        anyhow::bail!("invalid database name {name:?}")
    }
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

/// Connects to the server's maintenance database (`postgres`).
///
/// # Errors
/// Connection failures.
pub async fn connect_maintenance(url: &str) -> anyhow::Result<AsyncPgConnection> {
    Ok(AsyncPgConnection::establish(&with_database(url, "postgres")?).await?)
}

/// Whether `name` exists on the server.
///
/// # Errors
/// Query failures.
pub async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> anyhow::Result<bool> {
    let row: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(conn)
            .await?;
    Ok(row.exists)
}

/// Creates the database of `url` unless it exists. Returns whether it created it.
///
/// # Errors
/// Connection or DDL failures.
pub async fn ensure_database(url: &str) -> anyhow::Result<bool> {
    let name = database_name(url)?;
    let mut conn = connect_maintenance(url).await?;
    if database_exists(&mut conn, &name).await? {
        return Ok(false);
    }
    match conn
        .batch_execute(&format!("CREATE DATABASE {}", checked_ident(&name)?))
        .await
    {
        Ok(()) => Ok(true),
        // A concurrent starter created it first.
        Err(_) if database_exists(&mut conn, &name).await? => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The database name of a `postgres://` URL.
///
/// # Errors
/// A URL without one.
pub fn database_name(url: &str) -> anyhow::Result<String> {
    let base = url.split('?').next().unwrap_or(url);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    base[scheme_end..]
        .split_once('/')
        .map(|(_, db)| db.to_owned())
        .filter(|db| !db.is_empty())
        .ok_or_else(|| anyhow::anyhow!("database URL has no database name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u:p@h:5/app?sslmode=disable", "postgres").unwrap(),
            "postgres://u:p@h:5/postgres?sslmode=disable"
        );
        assert_eq!(database_name("postgres://u@h/app?x=1").unwrap(), "app");
        assert!(database_name("postgres://u@h").is_err());
    }

    #[test]
    fn refuses_names_that_are_not_plain_identifiers() {
        assert!(checked_ident("nexus_test_1").is_ok());
        assert!(checked_ident("x; DROP DATABASE y").is_err());
        assert!(checked_ident("").is_err());
    }
}
