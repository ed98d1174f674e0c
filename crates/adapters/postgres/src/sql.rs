//! Hand-built SQL that PostgreSQL can prepare once per connection.
//!
//! diesel's `sql_query` is never put in the prepared-statement cache, so every call is planned
//! again (several milliseconds for a search). [`Sql`] marks its text as safe to cache: the
//! statement cache then keys it by its text, and each distinct shape is prepared once.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Text, Untyped, Uuid as SqlUuid};
use diesel::QueryResult;
use uuid::Uuid;

/// A value bound to a parameter.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    BigInt(i64),
    Uuid(Uuid),
}

#[derive(Debug, Clone)]
enum Piece {
    Sql(String),
    Bind(Bind),
}

/// SQL text and parameters, in order. The text must not depend on parameter values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    pieces: Vec<Piece>,
}

impl Sql {
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.pieces.push(Piece::Sql(sql.to_owned()));
        self
    }

    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.pieces.push(Piece::Bind(value));
        self
    }

    /// Appends another fragment (e.g. a condition built elsewhere).
    pub(crate) fn append(&mut self, other: Sql) -> &mut Self {
        self.pieces.extend(other.pieces);
        self
    }
}

impl QueryId for Sql {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Sql {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for Sql {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Sql(sql) => out.push_sql(sql),
                Piece::Bind(Bind::Text(v)) => out.push_bind_param::<Text, _>(v)?,
                Piece::Bind(Bind::BigInt(v)) => out.push_bind_param::<BigInt, _>(v)?,
                Piece::Bind(Bind::Uuid(v)) => out.push_bind_param::<SqlUuid, _>(v)?,
            }
        }
        Ok(())
    }
}
