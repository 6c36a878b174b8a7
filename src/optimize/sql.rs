//! What study storage needs of a database: values and a connection that speaks SQL. The
//! backends (SQLite, PostgreSQL) implement it below [`super::storage`], which uses them.

use crate::error::{Error, Result};

/// A value bound to or read from SQL.
#[derive(Clone, Debug, PartialEq)]
pub enum Sql {
    Int(i64),
    Real(f64),
    Text(String),
    Null,
}

impl Sql {
    pub(super) fn int(&self) -> Result<i64> {
        match self {
            Sql::Int(i) => Ok(*i),
            other => Err(Error::invalid(format!("storage: expected an integer, got {other:?}"))),
        }
    }
    pub(super) fn real(&self) -> Option<f64> {
        match self {
            Sql::Real(r) => Some(*r),
            Sql::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Sql::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl From<Option<f64>> for Sql {
    fn from(v: Option<f64>) -> Self {
        v.map(Sql::Real).unwrap_or(Sql::Null)
    }
}
impl From<Option<String>> for Sql {
    fn from(v: Option<String>) -> Self {
        v.map(Sql::Text).unwrap_or(Sql::Null)
    }
}

/// The few operations the study logic needs from a database connection. SQL uses `$1, $2…`
/// placeholders; backends translate.
pub trait SqlConn {
    fn execute(&mut self, sql: &str, args: &[Sql]) -> Result<u64>;
    fn query(&mut self, sql: &str, args: &[Sql]) -> Result<Vec<Vec<Sql>>>;
    /// Starts a transaction holding the study's write lock.
    fn begin_locked(&mut self, study_id: i64) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self) -> Result<()>;
    /// The `CREATE TABLE` statements for this database.
    fn schema(&self) -> &'static [&'static str];
    /// Creates the tables if missing (safe when several workers start at once).
    fn ensure_schema(&mut self) -> Result<()> {
        for ddl in self.schema() {
            self.execute(ddl, &[])?;
        }
        Ok(())
    }
}

/// `url` with any password removed (user and password are dropped), for messages and reports.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}
