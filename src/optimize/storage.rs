//! Study storage in a real database: embedded SQLite by default, PostgreSQL to scale out.
//! Both speak the same SQL through [`SqlConn`]; everything a worker decides (the next trial
//! number, its parameters, whether the budget is spent) happens inside one locked transaction,
//! so concurrent workers never lose or duplicate a trial.

use super::space::{Params, SearchSpace};
pub use super::sql::{redact, Sql, SqlConn};
use super::{Trial, TrialState};
use crate::error::{Error, Result};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// This process: `host:pid`.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

/// A study in a database.
pub struct StudyStore {
    conn: Box<dyn SqlConn>,
    pub study_id: i64,
    pub name: String,
    /// Running trials without a heartbeat for this long are considered interrupted.
    pub stale_after_seconds: i64,
}

/// What a study was created with; reopening with different settings is refused.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudyDefinition {
    pub space: SearchSpace,
    /// The objective's fixed settings (model, task, rates, …) as JSON.
    pub objective: serde_json::Value,
}

impl StudyStore {
    /// Opens (creating if needed) study `name`; refuses a different definition.
    pub fn open(mut conn: Box<dyn SqlConn>, name: &str, def: &StudyDefinition) -> Result<Self> {
        conn.ensure_schema()?;
        let space = serde_json::to_string(&def.space).map_err(Error::json("search space"))?;
        let objective = serde_json::to_string(&def.objective).map_err(Error::json("objective"))?;
        let insert = "INSERT INTO relprune_studies (name, space, objective, created) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING";
        conn.execute(
            insert,
            &[Sql::Text(name.into()), Sql::Text(space.clone()), Sql::Text(objective.clone()), Sql::Int(now())],
        )?;
        let (study_id, stored) = Self::stored(conn.as_mut(), name)?
            .ok_or_else(|| Error::invalid(format!("study `{name}` could not be created")))?;
        // The objective first: options such as --normalize change both, and name the cause there.
        if stored.objective != def.objective {
            crate::bail!(
                "study `{name}` was created for a different objective ({}); use another --study name or the same \
                 model, task and settings",
                stored.objective
            );
        }
        if stored.space != def.space {
            crate::bail!(
                "study `{name}` was created with a different search space; use another --study name, or the original space:\n{}",
                stored.space.to_yaml()
            );
        }
        Ok(StudyStore { study_id, conn, name: name.into(), stale_after_seconds: 900 })
    }

    /// Attaches to an existing study without writing anything (for inspection): its
    /// definition is read from storage.
    pub fn attach(mut conn: Box<dyn SqlConn>, name: &str) -> Result<(Self, StudyDefinition)> {
        let (study_id, def) = Self::stored(conn.as_mut(), name)
            .map_err(|e| match e {
                e @ Error::Json { .. } => e,
                // The query failed: the storage holds no study tables.
                other => Error::invalid(format!("no relprune studies in this storage ({other})")),
            })?
            .ok_or_else(|| Error::invalid(format!("no study `{name}` in this storage")))?;
        Ok((StudyStore { study_id, conn, name: name.into(), stale_after_seconds: 900 }, def))
    }

    /// The id and definition of study `name` as stored, or None when there is no such study.
    fn stored(conn: &mut dyn SqlConn, name: &str) -> Result<Option<(i64, StudyDefinition)>> {
        let rows =
            conn.query("SELECT id, space, objective FROM relprune_studies WHERE name = $1", &[Sql::Text(name.into())])?;
        let Some(row) = rows.first() else { return Ok(None) };
        let def = StudyDefinition {
            space: serde_json::from_str(&row[1].text().unwrap_or_default())
                .map_err(Error::json("stored search space"))?,
            objective: serde_json::from_str(&row[2].text().unwrap_or_default())
                .map_err(Error::json("stored objective"))?,
        };
        Ok(Some((row[0].int()?, def)))
    }

    fn parse_trial(row: &[Sql]) -> Result<Trial> {
        let params: Params =
            serde_json::from_str(&row[3].text().unwrap_or_default()).map_err(Error::json("trial parameters"))?;
        let number = row[1].int()?;
        let value = row[4].real();
        if let Some(v) = value.filter(|v| !v.is_finite()) {
            crate::bail!(
                "trial {number} has the value {v} in storage; a trial value must be finite (the study is damaged)"
            );
        }
        Ok(Trial {
            id: row[0].int()?,
            number,
            state: TrialState::parse(&row[2].text().unwrap_or_default())?,
            params,
            value,
            message: row[5].text(),
            worker: row[6].text().unwrap_or_default(),
            started: row[7].int().unwrap_or(0),
            finished: row[8].real().map(|f| f as i64),
            intermediate: Vec::new(),
        })
    }

    /// Every trial of the study with its intermediate values, by number.
    pub fn trials(&mut self) -> Result<Vec<Trial>> {
        let rows = self.conn.query(
            "SELECT id, number, state, params, value, message, worker, started, finished FROM relprune_trials \
             WHERE study_id = $1 ORDER BY number",
            &[Sql::Int(self.study_id)],
        )?;
        let mut trials = rows.iter().map(|r| Self::parse_trial(r)).collect::<Result<Vec<_>>>()?;
        let inter = self.conn.query(
            "SELECT i.trial_id, i.step, i.value FROM relprune_intermediate i JOIN relprune_trials t ON t.id = i.trial_id \
             WHERE t.study_id = $1 ORDER BY i.trial_id, i.step",
            &[Sql::Int(self.study_id)],
        )?;
        for r in inter {
            let (tid, step, v) = (r[0].int()?, r[1].int()?, r[2].real().unwrap_or(f64::NAN));
            if !v.is_finite() {
                crate::bail!(
                    "an intermediate value of trial id {tid} at step {step} is not finite in storage (the study is damaged)"
                );
            }
            if let Some(t) = trials.iter_mut().find(|t| t.id == tid) {
                t.intermediate.push((step, v));
            }
        }
        Ok(trials)
    }

    /// Marks running trials of dead workers as interrupted: same host and the process is
    /// gone, or no heartbeat for `stale_after_seconds`. Returns how many.
    fn reap(&mut self) -> Result<usize> {
        let rows = self.conn.query(
            "SELECT id, worker, heartbeat FROM relprune_trials WHERE study_id = $1 AND state = 'running'",
            &[Sql::Int(self.study_id)],
        )?;
        let me = worker_id();
        let host = me.split(':').next().unwrap_or("").to_string();
        let mut n = 0;
        for r in rows {
            let worker = r[1].text().unwrap_or_default();
            let beat = r[2].int().unwrap_or(0);
            let dead_here = worker.split_once(':').is_some_and(|(h, pid)| {
                h == host && worker != me && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if dead_here || now() - beat > self.stale_after_seconds {
                self.conn.execute(
                    "UPDATE relprune_trials SET state = 'interrupted', message = $2, finished = $3 WHERE id = $1",
                    &[
                        Sql::Int(r[0].int()?),
                        Sql::Text(format!("worker {worker} stopped during the trial")),
                        Sql::Int(now()),
                    ],
                )?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// In one locked transaction: reaps interrupted trials, and if fewer than `budget` trials
    /// count (interrupted ones do not), asks `propose(history, number)` for parameters and
    /// inserts a running trial. None when the budget is spent.
    pub fn claim(
        &mut self,
        budget: usize,
        propose: &mut dyn FnMut(&[Trial], i64) -> Result<Params>,
    ) -> Result<Option<Trial>> {
        self.conn.begin_locked(self.study_id)?;
        let r = (|| -> Result<Option<Trial>> {
            self.reap()?;
            let history = self.trials()?;
            let counted = history.iter().filter(|t| t.state != TrialState::Interrupted).count();
            if counted >= budget {
                return Ok(None);
            }
            let number = history.iter().map(|t| t.number + 1).max().unwrap_or(0);
            let params = propose(&history, number)?;
            let json = serde_json::to_string(&params).map_err(Error::json("trial parameters"))?;
            let me = worker_id();
            let rows = self.conn.query(
                "INSERT INTO relprune_trials (study_id, number, state, params, worker, started, heartbeat) \
                 VALUES ($1, $2, 'running', $3, $4, $5, $5) RETURNING id",
                &[Sql::Int(self.study_id), Sql::Int(number), Sql::Text(json), Sql::Text(me.clone()), Sql::Int(now())],
            )?;
            let id = rows.first().ok_or_else(|| Error::invalid("storage: insert returned no id"))?[0].int()?;
            Ok(Some(Trial {
                id,
                number,
                state: TrialState::Running,
                params,
                value: None,
                message: None,
                worker: me,
                started: now(),
                finished: None,
                intermediate: Vec::new(),
            }))
        })();
        match r {
            Ok(v) => {
                self.conn.commit()?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.rollback();
                Err(e)
            }
        }
    }

    /// Records an intermediate value (and a heartbeat).
    pub fn report(&mut self, trial_id: i64, step: i64, value: f64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO relprune_intermediate (trial_id, step, value) VALUES ($1, $2, $3) ON CONFLICT (trial_id, step) DO UPDATE SET value = excluded.value",
            &[Sql::Int(trial_id), Sql::Int(step), Sql::Real(value)],
        )?;
        self.conn.execute(
            "UPDATE relprune_trials SET heartbeat = $2 WHERE id = $1",
            &[Sql::Int(trial_id), Sql::Int(now())],
        )?;
        Ok(())
    }

    /// Finishes a trial.
    pub fn finish(
        &mut self,
        trial_id: i64,
        state: TrialState,
        value: Option<f64>,
        message: Option<String>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE relprune_trials SET state = $2, value = $3, message = $4, finished = $5 WHERE id = $1",
            &[Sql::Int(trial_id), Sql::Text(state.name().into()), value.into(), message.into(), Sql::Int(now())],
        )?;
        Ok(())
    }
}

/// Opens the storage named by a URL: `sqlite:PATH` (or a plain path) or `postgresql://…`,
/// creating an SQLite file that does not exist yet.
pub fn connect(url: &str) -> Result<Box<dyn SqlConn>> {
    open_url(url, true)
}

/// Like [`connect`], but an SQLite file must already exist (inspection never creates one).
pub fn connect_existing(url: &str) -> Result<Box<dyn SqlConn>> {
    open_url(url, false)
}

/// Checks a storage URL's form without touching the storage (for checks before work starts).
pub fn check_url(url: &str) -> Result<()> {
    if is_postgres(url) {
        return Ok(());
    }
    sqlite_path(url).map(|_| ())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgresql://") || url.starts_with("postgres://")
}

fn open_url(url: &str, create: bool) -> Result<Box<dyn SqlConn>> {
    if is_postgres(url) {
        return Ok(Box::new(super::postgres::PgConn::connect(url)?));
    }
    let path = sqlite_path(url)?;
    if !create && !path.is_file() {
        crate::bail!("no study file at {}; give the --storage a study was written to", path.display());
    }
    Ok(Box::new(super::sqlite::SqliteConn::open(&path)?))
}

/// The file of an SQLite storage URL. Storage that would not persist (an empty path, an
/// in-memory database) is refused: every rerun would silently start the study over.
fn sqlite_path(url: &str) -> Result<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite:").unwrap_or(url);
    if path.contains("://") {
        crate::bail!("unsupported storage URL `{url}`; use sqlite:PATH or postgresql://user@host:port/db");
    }
    let memory = path.contains(":memory:") || path.contains("mode=memory");
    if path.trim().is_empty() || memory {
        crate::bail!(
            "storage `{url}` would not be saved (an {} database), so an interrupted study could not resume; \
             give a file, e.g. sqlite:out/study.sqlite",
            if memory { "in-memory" } else { "unnamed" }
        );
    }
    Ok(std::path::PathBuf::from(path))
}
