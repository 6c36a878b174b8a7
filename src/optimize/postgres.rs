//! The PostgreSQL backend, for several workers on several machines sharing one study.

use super::sql::{redact, Sql, SqlConn};
use crate::error::{Error, Result};
use postgres::types::ToSql;

pub struct PgConn {
    client: postgres::Client,
    url: String,
}

/// The server's own reason for a failure ("password authentication failed for user …",
/// "database … does not exist"), not the client library's bare "db error".
fn reason(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            s += &format!("; hint: {hint}");
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s += &format!(": {c}");
        }
        source = cause.source();
    }
    s
}

impl PgConn {
    pub fn connect(url: &str) -> Result<Self> {
        let client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| {
            Error::invalid(format!(
                "cannot use PostgreSQL at {}: {}; check host, port, user, password and database (e.g. \
                 postgresql://user@host:5432/db)",
                redact(url),
                reason(&e)
            ))
        })?;
        Ok(PgConn { client, url: redact(url) })
    }

    fn err(&self) -> impl Fn(postgres::Error) -> Error + '_ {
        move |e| Error::invalid(format!("PostgreSQL {}: {}", self.url, reason(&e)))
    }
}

fn boxed(args: &[Sql]) -> Vec<Box<dyn ToSql + Sync>> {
    args.iter()
        .map(|a| -> Box<dyn ToSql + Sync> {
            match a {
                Sql::Int(i) => Box::new(*i),
                Sql::Real(r) => Box::new(*r),
                Sql::Text(s) => Box::new(s.clone()),
                Sql::Null => Box::new(Option::<String>::None),
            }
        })
        .collect()
}

impl SqlConn for PgConn {
    fn execute(&mut self, sql: &str, args: &[Sql]) -> Result<u64> {
        let b = boxed(args);
        let refs: Vec<&(dyn ToSql + Sync)> = b.iter().map(|x| x.as_ref()).collect();
        let url = self.url.clone();
        self.client.execute(sql, &refs).map_err(|e| Error::invalid(format!("PostgreSQL {url}: {}", reason(&e))))
    }
    fn query(&mut self, sql: &str, args: &[Sql]) -> Result<Vec<Vec<Sql>>> {
        let b = boxed(args);
        let refs: Vec<&(dyn ToSql + Sync)> = b.iter().map(|x| x.as_ref()).collect();
        let url = self.url.clone();
        let rows =
            self.client.query(sql, &refs).map_err(|e| Error::invalid(format!("PostgreSQL {url}: {}", reason(&e))))?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        use postgres::types::Type;
                        let t = r.columns()[i].type_().clone();
                        if t == Type::INT8 {
                            r.get::<_, Option<i64>>(i).map(Sql::Int).unwrap_or(Sql::Null)
                        } else if t == Type::FLOAT8 {
                            r.get::<_, Option<f64>>(i).map(Sql::Real).unwrap_or(Sql::Null)
                        } else {
                            r.get::<_, Option<String>>(i).map(Sql::Text).unwrap_or(Sql::Null)
                        }
                    })
                    .collect()
            })
            .collect())
    }
    fn begin_locked(&mut self, study_id: i64) -> Result<()> {
        let url = self.url.clone();
        let e = |e: postgres::Error| Error::invalid(format!("PostgreSQL {url}: {}", reason(&e)));
        self.client.batch_execute("BEGIN").map_err(e)?;
        // The study row is the lock every claim of this study queues on.
        self.client.execute("SELECT id FROM relprune_studies WHERE id = $1 FOR UPDATE", &[&study_id]).map_err(e)?;
        Ok(())
    }
    fn commit(&mut self) -> Result<()> {
        let r = self.client.batch_execute("COMMIT");
        r.map_err(self.err())
    }
    fn rollback(&mut self) -> Result<()> {
        let r = self.client.batch_execute("ROLLBACK");
        r.map_err(self.err())
    }
    fn ensure_schema(&mut self) -> Result<()> {
        // Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog; serialise.
        self.execute("SELECT pg_advisory_lock(7272727)", &[])?;
        let r = (|| {
            for ddl in self.schema() {
                self.execute(ddl, &[])?;
            }
            Ok(())
        })();
        self.execute("SELECT pg_advisory_unlock(7272727)", &[])?;
        r
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS relprune_studies (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
             space TEXT NOT NULL, objective TEXT NOT NULL, created BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS relprune_trials (id BIGSERIAL PRIMARY KEY, study_id BIGINT NOT NULL, \
             number BIGINT NOT NULL, state TEXT NOT NULL, params TEXT NOT NULL, value DOUBLE PRECISION, message TEXT, \
             worker TEXT, started BIGINT, finished BIGINT, heartbeat BIGINT, UNIQUE (study_id, number))",
            "CREATE TABLE IF NOT EXISTS relprune_intermediate (trial_id BIGINT NOT NULL, step BIGINT NOT NULL, \
             value DOUBLE PRECISION, PRIMARY KEY (trial_id, step))",
        ]
    }
}
