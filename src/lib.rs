//! linked_audiences: Linked Audiences inside PostgreSQL.
//!
//! Data flows one way: JSON -> model -> validated model -> SQL -> execution -> diff ->
//! payloads -> outbox. The pure core (graph, audience definitions, compiler) makes no
//! SPI call; SPI lives in the thin `spi`/`api` edges.

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub mod activation;
pub mod audience;
pub mod capture;
pub mod compile;
pub mod compute;
pub mod error;
pub mod graph;
pub mod graph_api;
pub mod json;
pub mod names;
pub mod realtime;
pub mod sql;

use error::{Kind, Problem};

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

static MAX_RELATIONSHIP_DEPTH: GucSetting<i32> =
    GucSetting::<i32>::new(graph::validate::DEFAULT_MAX_DEPTH as i32);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    GucRegistry::define_int_guc(
        c"linked_audiences.max_relationship_depth",
        c"How many relationships deep a Data Graph may go.",
        c"Segment's limit is 6, the default.",
        &MAX_RELATIONSHIP_DEPTH,
        1,
        32,
        GucContext::Userset,
        GucFlags::default(),
    );
    realtime::init();
}

/// The depth limit in force.
pub fn max_depth() -> usize {
    MAX_RELATIONSHIP_DEPTH.get().max(1) as usize
}

fn errcode(kind: Kind) -> PgSqlErrorCode {
    match kind {
        Kind::InvalidParameter => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        Kind::UndefinedTable => PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        Kind::UndefinedColumn => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
        Kind::InsufficientPrivilege => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        Kind::NotInPrerequisiteState => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        Kind::UndefinedObject => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        Kind::DependentObjectsStillExist => PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
        Kind::Internal => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
    }
}

fn report(p: &Problem) -> ! {
    let mut r = pgrx::pg_sys::panic::ErrorReport::new(
        errcode(p.kind),
        p.full_message(),
        "linked_audiences",
    );
    if let Some(h) = &p.hint {
        r = r.set_hint(h.clone());
    }
    if let Some(d) = &p.detail {
        r = r.set_detail(d.clone());
    }
    r.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) does not return")
}

/// Raises a problem as a Postgres ERROR with its SQLSTATE, hint and detail: the one
/// place errors leave the extension (functions returning `Result` hand them up).
pub fn raise(p: &Problem) -> ! {
    report(p)
}

/// A required argument of a function that also takes optional ones (so Postgres calls
/// it with NULLs): a NULL is refused with 22023 at the argument's name.
pub fn given<T>(v: Option<T>, arg: &str) -> T {
    v.unwrap_or_else(|| raise(&error::Problem::invalid(arg, "must not be null")))
}

/// The value, or the problem raised as a Postgres ERROR.
pub fn ok_or_raise<T>(r: error::Result<T>) -> T {
    r.unwrap_or_else(|p| raise(&p))
}

/// Raises the first of several problems; the DETAIL says how many more there are.
pub fn raise_all(ps: &[Problem]) -> ! {
    raise(&Problem::first_of(ps))
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;
#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_cache;
#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_capture;
#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_types;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries='pg_cron'",
            "cron.database_name='pgrx_tests'",
        ]
    }
}
