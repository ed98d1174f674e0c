//! Hand-built SQL that PostgreSQL can prepare once per connection.
//!
//! diesel never puts `sql_query` or an `UPDATE` in the prepared-statement cache, so every call
//! costs a round trip to prepare it and a fresh plan (several milliseconds for a search; for the
//! short statements of a checkout, about as much as running them). [`Sql`] (built piece by piece)
//! and [`Statement`] (a fixed text with `$n` placeholders) mark their text as safe to cache: the
//! statement cache then keys it by its text, and each distinct shape is prepared once.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Double, HasSqlType, Text, Untyped, Uuid as SqlUuid};
use diesel::QueryResult;
use uuid::Uuid;

/// A value bound to a parameter.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    BigInt(i64),
    Double(f64),
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
                Piece::Bind(Bind::Double(v)) => out.push_bind_param::<Double, _>(v)?,
                Piece::Bind(Bind::Uuid(v)) => out.push_bind_param::<SqlUuid, _>(v)?,
            }
        }
        Ok(())
    }
}

/// The first of the rows a statement returned, for a write read with `load`.
///
/// diesel-async's `get_result` answers at the first row. Outside an explicit transaction,
/// PostgreSQL commits a statement when the protocol's Sync arrives, after the rows: a write read
/// that way is reported done before it is committed, so it can still fail (a deferred
/// constraint), be lost in a crash although the caller went on (a 201 answered, a job
/// published), or be missed by a read that follows at once. Every write that returns rows reads
/// them with `load`, which waits for the statement's end, then takes its row with this.
pub(crate) fn first_row<U>(rows: Vec<U>) -> QueryResult<U> {
    rows.into_iter().next().ok_or(diesel::result::Error::NotFound)
}

/// The one row of a statement that counts what it changed (`SELECT count(*) AS n …`).
#[derive(diesel::QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

/// One parameter of a [`Statement`], with its SQL type.
trait Param: Send + Sync {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Typed<ST, U>(U, PhantomData<fn() -> ST>);

impl<ST, U> Param for Typed<ST, U>
where
    Pg: HasSqlType<ST>,
    U: ToSql<ST, Pg> + Send + Sync,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, U>(&self.0)
    }
}

/// A hand-written statement whose placeholders `$1`, `$2`… take the values bound with
/// [`Statement::bind`], in that order; a placeholder may appear more than once. The text holds no
/// other `$` (no dollar quoting). Unlike `diesel::sql_query`, each connection prepares it once.
pub(crate) struct Statement<'a> {
    text: &'static str,
    params: Vec<Box<dyn Param + 'a>>,
}

impl<'a> Statement<'a> {
    pub(crate) fn new(text: &'static str) -> Self {
        Self { text, params: Vec::new() }
    }

    /// Binds the next parameter as SQL type `ST`.
    pub(crate) fn bind<ST, U>(mut self, value: U) -> Self
    where
        Pg: HasSqlType<ST>,
        U: ToSql<ST, Pg> + Send + Sync + 'a,
        ST: 'a,
    {
        self.params.push(Box::new(Typed::<ST, U>(value, PhantomData)));
        self
    }
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for Statement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let text = self.text;
        let mut rest = text;
        let mut highest = 0;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            let number: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
            let param = number.checked_sub(1).and_then(|i| self.params.get(i)).ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(
                    format!("placeholder ${number} has no bound value in: {text}").into(),
                )
            })?;
            // Diesel numbers the placeholders itself, in order of appearance.
            param.push(&mut out)?;
            highest = highest.max(number);
            rest = &rest[at + 1 + digits..];
        }
        if highest != self.params.len() {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("{} values bound, placeholders up to ${highest} in: {text}", self.params.len()).into(),
            ));
        }
        out.push_sql(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use diesel::sql_types::{BigInt, Text};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

    use super::{first_row, Count, Statement};

    #[derive(diesel::QueryableByName)]
    struct Answer {
        #[diesel(sql_type = Text)]
        a: String,
        #[diesel(sql_type = BigInt)]
        b: i64,
    }

    /// How many statements this connection keeps prepared whose text contains `marker`.
    async fn prepared_with(conn: &mut AsyncPgConnection, marker: &str) -> i64 {
        // The marker is split in the query so that this statement never matches itself.
        let (head, tail) = marker.split_at(marker.len() / 2);
        let prepared: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE '%{head}' || '{tail}%'"
        ))
        .get_result(conn)
        .await
        .unwrap();
        prepared.n
    }

    #[tokio::test]
    async fn a_write_that_fails_when_it_commits_is_an_error_and_not_reported_done() {
        // A deferred constraint is checked when the statement's implicit transaction commits,
        // after its rows were sent: the write is rolled back once its row is out.
        let db = ecom_testkit::TestDb::new().await;
        let mut conn = AsyncPgConnection::establish(&db.url()).await.unwrap();
        conn.batch_execute(
            "CREATE TABLE probe (id BIGINT, CONSTRAINT probe_once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED); \
             INSERT INTO probe VALUES (1);",
        )
        .await
        .unwrap();
        let again = || {
            Statement::new("WITH i AS (INSERT INTO probe VALUES ($1) RETURNING id) SELECT count(*) AS n FROM i")
                .bind::<BigInt, _>(1_i64)
        };
        // The hazard `first_row` exists for: `get_result` reports the rolled-back write as done.
        let early: Count = again().get_result(&mut conn).await.unwrap();
        assert_eq!(early.n, 1);
        let read = again().load::<Count>(&mut conn).await.and_then(first_row);
        assert!(read.is_err(), "the commit's failure is seen");
        let rows: Count = Statement::new("SELECT count(*) AS n FROM probe").get_result(&mut conn).await.unwrap();
        assert_eq!(rows.n, 1, "neither write stayed");
    }

    #[tokio::test]
    async fn placeholders_take_their_values_and_the_statement_is_prepared_once_per_connection() {
        let db = ecom_testkit::TestDb::new().await;
        let mut conn = AsyncPgConnection::establish(&db.url()).await.unwrap();
        for i in 0..3_i64 {
            // `$2` twice, `$1` between: each occurrence takes its own value.
            let answer: Answer = Statement::new("SELECT $2 || $1 || $2 AS a, $3 + 1 AS b -- statement-test")
                .bind::<Text, _>("x")
                .bind::<Text, _>("-")
                .bind::<BigInt, _>(i)
                .get_result(&mut conn)
                .await
                .unwrap();
            assert_eq!((answer.a.as_str(), answer.b), ("-x-", i + 1));
        }
        // Named (cached) statements are listed; diesel's one-off statements are unnamed.
        assert_eq!(prepared_with(&mut conn, "statement-test").await, 1, "three calls, one prepared statement");

        let unbound = Statement::new("SELECT $2 AS a").bind::<Text, _>("x").execute(&mut conn).await;
        assert!(unbound.is_err(), "a placeholder without a value is an error, not a panic");
        let unused =
            Statement::new("SELECT $1 AS a").bind::<Text, _>("x").bind::<Text, _>("y").execute(&mut conn).await;
        assert!(unused.is_err(), "a value no placeholder takes is an error too");
    }
}
