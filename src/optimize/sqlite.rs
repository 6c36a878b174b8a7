//! The embedded SQLite backend (a file; several local processes may share it).

use super::sql::{Sql, SqlConn};
use crate::error::{Error, Result};
use std::path::Path;

pub struct SqliteConn {
    conn: rusqlite::Connection,
    path: String,
}

fn err(path: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::invalid(format!("SQLite study file {path}: {e}"))
}

/// `$1` → `?1` (SQLite's numbered parameters).
fn translate(sql: &str) -> String {
    sql.replace('$', "?")
}

fn to_sql(v: &Sql) -> rusqlite::types::Value {
    match v {
        Sql::Int(i) => rusqlite::types::Value::Integer(*i),
        Sql::Real(r) => rusqlite::types::Value::Real(*r),
        Sql::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Sql::Null => rusqlite::types::Value::Null,
    }
}

impl SqliteConn {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        }
        let p = path.display().to_string();
        let conn = rusqlite::Connection::open(path).map_err(err(&p))?;
        conn.busy_timeout(std::time::Duration::from_secs(60)).map_err(err(&p))?;
        // A damaged file is refused before anything is written to it (even the journal mode):
        // a broken unique index would otherwise accept a second study of the same name.
        let damaged = |why: String| {
            Error::invalid(format!(
                "SQLite study file {p} is damaged ({why}); restore it from a copy, or start a new study in another file"
            ))
        };
        let check: String =
            conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| damaged(e.to_string()))?;
        if check != "ok" {
            return Err(damaged(check.replace('\n', "; ")));
        }
        // WAL: readers do not block the writer; a crash leaves the file consistent.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err(&p))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err(&p))?;
        Ok(SqliteConn { conn, path: p })
    }
}

impl SqlConn for SqliteConn {
    fn execute(&mut self, sql: &str, args: &[Sql]) -> Result<u64> {
        let vals: Vec<_> = args.iter().map(to_sql).collect();
        let n = self.conn.execute(&translate(sql), rusqlite::params_from_iter(vals)).map_err(err(&self.path))?;
        Ok(n as u64)
    }
    fn query(&mut self, sql: &str, args: &[Sql]) -> Result<Vec<Vec<Sql>>> {
        let vals: Vec<_> = args.iter().map(to_sql).collect();
        let path = self.path.clone();
        let mut stmt = self.conn.prepare(&translate(sql)).map_err(err(&path))?;
        let n = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(vals), |row| {
                (0..n)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Integer(v) => Sql::Int(v),
                            rusqlite::types::ValueRef::Real(v) => Sql::Real(v),
                            rusqlite::types::ValueRef::Text(t) => Sql::Text(String::from_utf8_lossy(t).into_owned()),
                            _ => Sql::Null,
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(err(&path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err(&path))
    }
    fn begin_locked(&mut self, _study_id: i64) -> Result<()> {
        // IMMEDIATE takes the database's write lock now, serialising claims across processes.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(err(&self.path))
    }
    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(err(&self.path))
    }
    fn rollback(&mut self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK").map_err(err(&self.path))
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS relprune_studies (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
             space TEXT NOT NULL, objective TEXT NOT NULL, created INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS relprune_trials (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, \
             number INTEGER NOT NULL, state TEXT NOT NULL, params TEXT NOT NULL, value REAL, message TEXT, \
             worker TEXT, started INTEGER, finished INTEGER, heartbeat INTEGER, UNIQUE (study_id, number))",
            "CREATE TABLE IF NOT EXISTS relprune_intermediate (trial_id INTEGER NOT NULL, step INTEGER NOT NULL, \
             value REAL, PRIMARY KEY (trial_id, step))",
        ]
    }
}
