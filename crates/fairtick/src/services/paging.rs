//! Cursor pagination, the same everywhere: a page size within bounds, an opaque cursor that is
//! the last id of the previous page (a keyset seek, never an offset), and one more row fetched
//! than shown to know whether another page exists.

use super::{Error, Result};

/// `limit` (or `default`) if it is between 1 and `max`.
pub fn limit(value: Option<u32>, default: u32, max: u32) -> Result<u32> {
    let value = value.unwrap_or(default);
    if !(1..=max).contains(&value) {
        return Err(Error::invalid("limit", format!("must be between 1 and {max}")));
    }
    Ok(value)
}

/// The id a cursor stands for; an empty or absent cursor is the first page.
pub fn cursor(text: Option<&str>) -> Result<Option<i64>> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or_else(|| Error::invalid("cursor", "is not a cursor from a previous page")),
    }
}

/// Given up to `limit + 1` rows, the page and the cursor of the next one.
pub fn split<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<String>) {
    if rows.len() <= limit as usize {
        return (rows, None);
    }
    rows.truncate(limit as usize);
    let next = rows.last().map(|row| id(row).to_string());
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_cursors() {
        assert_eq!(limit(None, 50, 200).unwrap(), 50);
        assert!(limit(Some(0), 50, 200).is_err() && limit(Some(201), 50, 200).is_err());
        assert_eq!(cursor(Some("17")).unwrap(), Some(17));
        assert_eq!(cursor(Some("")).unwrap(), None);
        assert!(cursor(Some("-3")).is_err() && cursor(Some("x")).is_err());
        assert_eq!(split(vec![9, 8, 7], 2, |r| *r), (vec![9, 8], Some("8".to_owned())));
        assert_eq!(split(vec![9, 8], 2, |r| *r), (vec![9, 8], None));
    }
}
