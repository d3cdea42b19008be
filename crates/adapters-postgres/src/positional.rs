//! Reading a hand-written query's columns by position.
//!
//! `QueryableByName`'s derive looks every column up by name, scanning the row's columns
//! and comparing names each time: for a 17-column contact that was about 9 % of the
//! server's instructions for a page of 50. Reading column `i` and checking that its name
//! is the expected one costs one comparison; a query that lists its columns in another
//! order still reads correctly, through the lookup by name.

use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::row::{Field, Row};

/// Column `index` of `row`, which should be named `name`, decoded as `ST` into `T`.
pub(crate) fn column<'a, ST, T, R>(row: &R, index: usize, name: &str) -> deserialize::Result<T>
where
    R: Row<'a, Pg>,
    T: FromSql<ST, Pg>,
{
    let field = Row::get(row, index)
        .filter(|f| f.field_name() == Some(name))
        .or_else(|| Row::get(row, name))
        .ok_or_else(|| format!("column `{name}` was not present in the query"))?;
    T::from_nullable_sql(field.value())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use diesel::QueryableByName;
    use diesel::row::NamedRow;
    use diesel::sql_types::{Integer, Text};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    use super::*;
    use crate::testing::TestDatabase;

    #[derive(Debug, PartialEq)]
    struct Pair {
        a: i32,
        b: String,
    }

    impl QueryableByName<Pg> for Pair {
        fn build<'a>(row: &impl NamedRow<'a, Pg>) -> deserialize::Result<Self> {
            Ok(Self {
                a: column::<Integer, _, _>(row, 0, "a")?,
                b: column::<Text, _, _>(row, 1, "b")?,
            })
        }
    }

    #[tokio::test]
    async fn columns_in_another_order_are_found_by_name_and_missing_ones_refused() {
        let db = TestDatabase::create().await;
        let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
        let read = |sql: &'static str| diesel::sql_query(sql);
        let in_order: Pair = read("SELECT 1 AS a, 'x' AS b")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            in_order,
            Pair {
                a: 1,
                b: "x".into()
            }
        );
        let swapped: Pair = read("SELECT 'y' AS b, 2 AS a")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            swapped,
            Pair {
                a: 2,
                b: "y".into()
            }
        );
        let missing = read("SELECT 3 AS a")
            .get_result::<Pair>(&mut conn)
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("column `b`"), "{missing}");
    }
}
