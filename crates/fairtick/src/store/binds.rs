//! Statements over a list of rows or values, written once for both engines.
//!
//! On SQLite a list is spelled out, one anonymous `?` per value. On PostgreSQL it is passed as
//! one array per column and unnested, so that the statement's text does not depend on the
//! number of rows: it is parsed and planned once per connection and then only bound and run,
//! one round trip instead of two, where a spelled-out list of a few hundred rows was parsed,
//! planned and had its expressions set up row by row at every call.

use super::dual::{Param, Prepared};
use super::{Backend, Store};

/// The SQL type of the values of a list, which PostgreSQL's arrays need to be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SqlType {
    Int,
    Text,
}

impl SqlType {
    fn array(self) -> &'static str {
        match self {
            SqlType::Int => "BIGINT[]",
            SqlType::Text => "TEXT[]",
        }
    }
}

/// The parameters of a statement being written, in the order their placeholders appear in
/// its text: SQLite's anonymous `?` binds by position.
pub(crate) struct Binds {
    backend: Backend,
    params: Vec<Param>,
}

impl Store {
    /// Starts the parameters of a statement.
    pub(crate) fn binds(&self) -> Binds {
        Binds { backend: self.backend, params: Vec::new() }
    }
}

impl Binds {
    /// A placeholder for `value`. Statements with many parameters use SQLite's anonymous `?`: a
    /// numbered one is a name that SQLite and sqlx look up by scanning the statement's list of
    /// names, which made binding a 2,000-parameter batch quadratic (a fifth of the server's time
    /// under load went to `strncmp`).
    pub(crate) fn one(&mut self, value: impl Into<Param>) -> String {
        self.params.push(value.into());
        match self.backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${}", self.params.len()),
        }
    }

    /// `rows` as a source of rows whose columns are named `column1`, `column2`, …: for
    /// `INSERT INTO t (…) {rows}` or `FROM ({rows}) AS v`.
    pub(crate) fn rows<const C: usize>(&mut self, types: [SqlType; C], rows: &[[Param; C]]) -> String {
        match self.backend {
            Backend::Sqlite => {
                let row = format!("({})", vec!["?"; C].join(", "));
                self.params.extend(rows.iter().flatten().cloned());
                format!("VALUES {}", vec![row; rows.len()].join(", "))
            }
            Backend::Postgres => {
                let arrays: Vec<String> = (0..C)
                    .map(|c| {
                        let array = array_literal(rows.iter().map(|row| &row[c]));
                        format!("CAST({} AS {})", self.one(array), types[c].array())
                    })
                    .collect();
                let names: Vec<String> = (1..=C).map(|c| format!("column{c}")).collect();
                format!("SELECT * FROM UNNEST({}) AS u({})", arrays.join(", "), names.join(", "))
            }
        }
    }

    /// `expr IN (…)` of `values`. On PostgreSQL the array is unnested in a sub-select, which
    /// runs once per statement and can drive an index scan: a cast of the (text) parameter
    /// right in the condition was redone for every row a scan read, 2–7 ms per statement.
    pub(crate) fn any_of(&mut self, expr: &str, ty: SqlType, values: &[Param]) -> String {
        match self.backend {
            Backend::Sqlite => {
                self.params.extend(values.iter().cloned());
                format!("{expr} IN ({})", vec!["?"; values.len()].join(", "))
            }
            Backend::Postgres => {
                let array = self.one(array_literal(values.iter()));
                format!("{expr} = ANY(ARRAY(SELECT UNNEST(CAST({array} AS {}))))", ty.array())
            }
        }
    }

    /// Whether to keep the statement prepared: on PostgreSQL its text is the same for any
    /// number of rows; on SQLite it is written for this many, and a cache of one-off shapes
    /// would only hold memory.
    pub(crate) fn prepared(&self) -> Prepared {
        match self.backend {
            Backend::Sqlite => Prepared::Once,
            Backend::Postgres => Prepared::Keep,
        }
    }

    pub(crate) fn params(&self) -> &[Param] {
        &self.params
    }
}

/// A PostgreSQL array literal, `{1,NULL,"text"}`: text is always quoted, with `"` and `\`
/// escaped, so that no value can be read as a separator or as NULL.
fn array_literal<'a>(values: impl Iterator<Item = &'a Param>) -> String {
    let mut out = String::from("{");
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match value {
            Param::Int(Some(v)) => out.push_str(&v.to_string()),
            Param::Text(Some(text)) => {
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Param::Int(None) | Param::Text(None) => out.push_str("NULL"),
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_quote_text_and_keep_nulls_apart_from_the_word_null() {
        let values = [
            Param::from(-5),
            Param::Int(None),
            Param::from("NULL"),
            Param::from(r#"a "quoted", \ b{}"#),
            Param::Text(None),
        ];
        assert_eq!(array_literal(values.iter()), r#"{-5,NULL,"NULL","a \"quoted\", \\ b{}",NULL}"#);
        assert_eq!(array_literal(std::iter::empty()), "{}");
    }

    #[test]
    fn placeholders_follow_the_text_on_both_engines() {
        let rows = [[Param::from(1), Param::from("x")], [Param::from(2), Param::from("y")]];
        let mut sqlite = Binds { backend: Backend::Sqlite, params: Vec::new() };
        let first = sqlite.one(7);
        let source = sqlite.rows([SqlType::Int, SqlType::Text], &rows);
        let list = sqlite.any_of("id", SqlType::Int, &[Param::from(1), Param::from(2)]);
        assert_eq!((first.as_str(), source.as_str()), ("?", "VALUES (?, ?), (?, ?)"));
        assert_eq!(list, "id IN (?, ?)");
        assert_eq!(sqlite.params().len(), 7);
        assert_eq!(sqlite.prepared(), Prepared::Once);

        let mut postgres = Binds { backend: Backend::Postgres, params: Vec::new() };
        let first = postgres.one(7);
        let source = postgres.rows([SqlType::Int, SqlType::Text], &rows);
        let list = postgres.any_of("id", SqlType::Int, &[Param::from(1), Param::from(2)]);
        assert_eq!(first, "$1");
        assert_eq!(
            source,
            "SELECT * FROM UNNEST(CAST($2 AS BIGINT[]), CAST($3 AS TEXT[])) AS u(column1, column2)"
        );
        assert_eq!(list, "id = ANY(ARRAY(SELECT UNNEST(CAST($4 AS BIGINT[]))))");
        let texts: Vec<String> = postgres
            .params()
            .iter()
            .map(|p| match p {
                Param::Text(Some(t)) => t.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["Int(Some(7))", "{1,2}", r#"{"x","y"}"#, "{1,2}"]);
        assert_eq!(postgres.prepared(), Prepared::Keep);
    }
}
