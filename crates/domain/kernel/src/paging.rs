//! Cursor paging: stable under inserts, every item returned once when walking the cursors.

use chrono::{DateTime, Datelike, Utc};
use uuid::Uuid;

/// A position in an ordered list: the sort key of the last item seen (if the order has one
/// besides the id) and that item's id as the tie-breaker.
///
/// Opaque to clients: [`Cursor::encode`] and [`Cursor::decode`] define the wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    id: Uuid,
    key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct CursorError;

impl Cursor {
    pub fn after_id(id: Uuid) -> Self {
        Self { id, key: None }
    }

    pub fn after_key(key: impl Into<String>, id: Uuid) -> Self {
        Self { id, key: Some(key.into()) }
    }

    /// A position in a list ordered by a time (newest first, say), then by id: the key is the
    /// time in microseconds since the epoch.
    pub fn after_time(at: DateTime<Utc>, id: Uuid) -> Self {
        Self::after_key(at.timestamp_micros().to_string(), id)
    }

    /// The time of a cursor made by [`Cursor::after_time`]; `None` for a cursor of another
    /// kind of list, or a time no item can have (outside the years 1 to 9999, which every
    /// store can compare with).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        let at = DateTime::from_timestamp_micros(self.key()?.parse::<i64>().ok()?)?;
        (1..=9999).contains(&at.year()).then_some(at)
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Hex of `v1:<id>[:<key>]`; URL-safe and free of characters that need escaping.
    pub fn encode(&self) -> String {
        let plain = match &self.key {
            Some(key) => format!("v1:{}:{key}", self.id),
            None => format!("v1:{}", self.id),
        };
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(raw: &str) -> Result<Self, CursorError> {
        if raw.is_empty() || raw.len() > 1024 || !raw.len().is_multiple_of(2) {
            return Err(CursorError);
        }
        let bytes = (0..raw.len())
            .step_by(2)
            .map(|i| raw.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or(CursorError)?;
        let plain = String::from_utf8(bytes).map_err(|_| CursorError)?;
        let rest = plain.strip_prefix("v1:").ok_or(CursorError)?;
        let (id, key) = match rest.split_once(':') {
            Some((id, key)) => (id, Some(key.to_owned())),
            None => (rest, None),
        };
        let id = Uuid::parse_str(id).map_err(|_| CursorError)?;
        Ok(Self { id, key })
    }
}

/// What a caller asked for: how many items, after which position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    limit: u32,
    after: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit must be between 1 and {max}")]
pub struct LimitError {
    pub max: u32,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 20;
    pub const MAX_LIMIT: u32 = 100;

    pub fn new(limit: Option<i64>, after: Option<Cursor>) -> Result<Self, LimitError> {
        let limit = match limit {
            None => Self::DEFAULT_LIMIT,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=Self::MAX_LIMIT).contains(n))
                .ok_or(LimitError { max: Self::MAX_LIMIT })?,
        };
        Ok(Self { limit, after })
    }

    /// The same request, continuing after `after`.
    #[must_use]
    pub fn with_after(mut self, after: Option<Cursor>) -> Self {
        self.after = after;
        self
    }

    pub fn first(limit: u32) -> Self {
        Self { limit: limit.clamp(1, Self::MAX_LIMIT), after: None }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// One more than the limit: a repository fetches this many to learn whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    pub fn after(&self) -> Option<&Cursor> {
        self.after.as_ref()
    }
}

/// One page of results and the cursor of the next page, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items; the extra one only proves a next page.
    pub fn from_overfetch(mut items: Vec<T>, request: &PageRequest, cursor_of: impl Fn(&T) -> Cursor) -> Self {
        let limit = request.limit() as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor_of)
        } else {
            None
        };
        Self { items, next }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next: self.next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_url_safe() {
        let id = Uuid::now_v7();
        for cursor in [Cursor::after_id(id), Cursor::after_key("1999", id), Cursor::after_key("a:b c", id)] {
            let encoded = cursor.encode();
            assert!(encoded.chars().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(Cursor::decode(&encoded), Ok(cursor));
        }
    }

    #[test]
    fn garbage_cursors_are_refused() {
        for raw in ["", "zz", "abc", "7631", &"76".repeat(600)] {
            assert_eq!(Cursor::decode(raw), Err(CursorError), "{raw}");
        }
    }

    #[test]
    fn time_cursors_hold_a_time_every_store_can_compare_with() {
        let id = Uuid::now_v7();
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let cursor = Cursor::decode(&Cursor::after_time(at, id).encode()).unwrap();
        assert_eq!((cursor.time(), cursor.id()), (Some(at), id));
        assert_eq!(Cursor::after_id(id).time(), None);
        for key in ["price:100", "offset:3", "x", "-99999999999999999", "253402300800000000"] {
            assert_eq!(Cursor::after_key(key, id).time(), None, "{key}");
        }
    }

    #[test]
    fn limits_default_to_20_and_stay_within_1_to_100() {
        assert_eq!(PageRequest::new(None, None).map(|p| p.limit()), Ok(20));
        assert_eq!(PageRequest::new(Some(100), None).map(|p| p.limit()), Ok(100));
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(101), None).is_err());
        assert!(PageRequest::new(Some(-1), None).is_err());
    }

    #[test]
    fn an_overfetched_item_yields_a_next_cursor() {
        let request = PageRequest::first(2);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = Page::from_overfetch(ids.clone(), &request, |id| Cursor::after_id(*id));
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next, Some(Cursor::after_id(ids[1])));

        let last = Page::from_overfetch(ids[..2].to_vec(), &request, |id| Cursor::after_id(*id));
        assert_eq!(last.next, None);
    }
}
