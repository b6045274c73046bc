//! A row read the same way on both engines: the records both stores hand out (datasets,
//! splits, submissions and their folds) are built from their columns once, by functions
//! generic over `Cols`, which a rusqlite row and a tokio-postgres row implement. Integers are
//! SQLite's INTEGER and PostgreSQL's BIGINT, flags SQLite's 0/1 and PostgreSQL's BOOLEAN.

/// The column types the shared record builders read.
pub(crate) trait Cols {
    type Error;
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    fn real(&self, i: usize) -> Result<f64, Self::Error>;
    fn flag(&self, i: usize) -> Result<bool, Self::Error>;
}

impl Cols for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn real(&self, i: usize) -> rusqlite::Result<f64> {
        self.get(i)
    }
    fn flag(&self, i: usize) -> rusqlite::Result<bool> {
        self.get(i)
    }
}

impl Cols for tokio_postgres::Row {
    type Error = tokio_postgres::Error;
    fn int(&self, i: usize) -> Result<i64, tokio_postgres::Error> {
        self.try_get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, tokio_postgres::Error> {
        self.try_get(i)
    }
    fn text(&self, i: usize) -> Result<String, tokio_postgres::Error> {
        self.try_get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, tokio_postgres::Error> {
        self.try_get(i)
    }
    fn real(&self, i: usize) -> Result<f64, tokio_postgres::Error> {
        self.try_get(i)
    }
    fn flag(&self, i: usize) -> Result<bool, tokio_postgres::Error> {
        self.try_get(i)
    }
}
