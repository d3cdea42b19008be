//! Hand-built SQL with numbered binds, sent either unprepared (planned with its actual
//! values every time) or as a statement that each connection prepares once and reuses.
//!
//! diesel never caches `sql_query` statements: each costs a Parse round trip and a fresh
//! plan. That is what a trigram search needs (a generic plan for `LIKE '%smi%'` was
//! measured 2.7× slower than a custom one), but a waste for shapes whose generic plan is
//! as good as any, such as a page in index order or a lookup by key.

use std::ops::Range;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, BoxedSqlQuery, Query, QueryFragment, QueryId, SqlQuery};
use diesel::sql_types::{
    Array, BigInt, Int2, Integer, Jsonb, Nullable, Text, Timestamptz, Untyped, Uuid as SqlUuid,
};
use uuid::Uuid;

/// One bind of a hand-built statement.
pub(crate) enum Bind {
    Uuid(Uuid),
    Text(String),
    TextArray(Vec<String>),
    Time(DateTime<Utc>),
    Json(serde_json::Value),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    OptUuid(Option<Uuid>),
    OptText(Option<String>),
    OptTime(Option<DateTime<Utc>>),
}

/// SQL text with `$n` placeholders and their values.
#[derive(Default)]
pub(crate) struct Statement {
    sql: String,
    binds: Vec<Bind>,
    /// Where each placeholder sits in `sql`, in bind order.
    placeholders: Vec<Range<usize>>,
}

impl Statement {
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        let start = self.sql.len();
        self.sql.push('$');
        self.sql.push_str(&self.binds.len().to_string());
        self.placeholders.push(start..self.sql.len());
        self
    }

    /// Binds `values` separated by commas, as a select list or a `VALUES` row.
    pub(crate) fn bind_list(&mut self, values: impl IntoIterator<Item = Bind>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self
    }

    /// Sent unprepared: PostgreSQL plans it with these very values.
    pub(crate) fn query(self) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        unprepared(&self.sql, self.binds)
    }

    /// Prepared once per connection (keyed by its SQL text) and reused after; only for
    /// shapes whose plan does not depend on the values bound.
    pub(crate) const fn prepared(self) -> Prepared {
        Prepared(self)
    }
}

/// `sql`, whose `$n` placeholders are already written, with `binds` in that order, sent
/// unprepared.
pub(crate) fn unprepared(
    sql: &str,
    binds: impl IntoIterator<Item = Bind>,
) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    let mut q = diesel::sql_query(sql).into_boxed();
    for b in binds {
        q = match b {
            Bind::Uuid(v) => q.bind::<SqlUuid, _>(v),
            Bind::Text(v) => q.bind::<Text, _>(v),
            Bind::TextArray(v) => q.bind::<Array<Text>, _>(v),
            Bind::Time(v) => q.bind::<Timestamptz, _>(v),
            Bind::Json(v) => q.bind::<Jsonb, _>(v),
            Bind::SmallInt(v) => q.bind::<Int2, _>(v),
            Bind::Int(v) => q.bind::<Integer, _>(v),
            Bind::BigInt(v) => q.bind::<BigInt, _>(v),
            Bind::OptUuid(v) => q.bind::<Nullable<SqlUuid>, _>(v),
            Bind::OptText(v) => q.bind::<Nullable<Text>, _>(v),
            Bind::OptTime(v) => q.bind::<Nullable<Timestamptz>, _>(v),
        };
    }
    q
}

/// A [`Statement`] that diesel's per-connection statement cache may keep.
pub(crate) struct Prepared(Statement);

impl QueryId for Prepared {
    type QueryId = ();
    // Not static: the cache keys it by its SQL text and bind types instead.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for Prepared {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let s = &self.0;
        let mut from = 0;
        for (range, bind) in s.placeholders.iter().zip(&s.binds) {
            out.push_sql(&s.sql[from..range.start]);
            // Pushing the bind writes its own `$n`, in the same order.
            match bind {
                Bind::Uuid(v) => out.push_bind_param::<SqlUuid, _>(v)?,
                Bind::Text(v) => out.push_bind_param::<Text, _>(v)?,
                Bind::TextArray(v) => out.push_bind_param::<Array<Text>, _>(v)?,
                Bind::Time(v) => out.push_bind_param::<Timestamptz, _>(v)?,
                Bind::Json(v) => out.push_bind_param::<Jsonb, _>(v)?,
                Bind::SmallInt(v) => out.push_bind_param::<Int2, _>(v)?,
                Bind::Int(v) => out.push_bind_param::<Integer, _>(v)?,
                Bind::BigInt(v) => out.push_bind_param::<BigInt, _>(v)?,
                Bind::OptUuid(v) => out.push_bind_param::<Nullable<SqlUuid>, _>(v)?,
                Bind::OptText(v) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                Bind::OptTime(v) => out.push_bind_param::<Nullable<Timestamptz>, _>(v)?,
            }
            from = range.end;
        }
        out.push_sql(&s.sql[from..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;

    use super::*;

    #[test]
    fn the_prepared_form_sends_the_same_sql_and_binds() {
        let mut s = Statement::default();
        s.push("SELECT 1 FROM t WHERE a = ")
            .bind(Bind::BigInt(7))
            .push(" AND b = ")
            .bind(Bind::Text("x".into()))
            .push(" LIMIT 3");
        let expected = s.sql.clone();
        let prepared = s.prepared();
        let shown = debug_query::<Pg, _>(&prepared).to_string();
        assert!(shown.starts_with(&expected), "{shown}");
        assert!(shown.contains("binds: [7, \"x\"]"), "{shown}");
        assert_eq!(shown.matches('$').count(), 2);
    }
}
