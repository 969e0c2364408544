//! Full-text search over emails: a weighted `tsvector` (subject A, addresses B, body C) kept by
//! PostgreSQL in a generated column with a GIN index, queried with `websearch_to_tsquery`, which
//! accepts anything a person types (quotes, `or`, `-word`) and never raises a syntax error.

use serde::{Deserialize, Serialize};

use crate::domain::{Email, ValidationError};
use crate::store::{EMAIL_COLUMNS, Store, StoreError, email_from_row};

/// Largest page.
pub const MAX_PAGE_SIZE: i64 = 100;
/// Page size when none is given.
pub const DEFAULT_PAGE_SIZE: i64 = 10;
/// Highest page number accepted (keeps `OFFSET` bounded).
pub const MAX_PAGE: i64 = 10_000;
/// Longest search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 256;

/// A validated search: text (empty lists everything, newest first), page from 1, size 1..=100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    text: String,
    page: i64,
    size: i64,
}

impl SearchQuery {
    /// Validates raw values; `None` takes the default (page 1, size 10).
    pub fn new(text: Option<String>, page: Option<i64>, size: Option<i64>) -> Result<Self, ValidationError> {
        let text = text.unwrap_or_default();
        if text.chars().count() > MAX_SEARCH_CHARS {
            return Err(ValidationError::new(
                "search",
                format!("must be at most {MAX_SEARCH_CHARS} characters"),
            ));
        }
        if text.contains('\0') {
            return Err(ValidationError::new("search", "must not contain NUL characters"));
        }
        let page = page.unwrap_or(1);
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(ValidationError::new("page", format!("must be between 1 and {MAX_PAGE}")));
        }
        let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ValidationError::new("size", format!("must be between 1 and {MAX_PAGE_SIZE}")));
        }
        Ok(Self { text: text.trim().to_owned(), page, size })
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchPage {
    /// Emails matching, in all pages.
    pub total_count: i64,
    /// Pages of `size` needed for them.
    pub total_pages: i64,
    /// This page (from 1).
    pub page: i64,
    /// Page size.
    pub size: i64,
    /// Whether a later page has results.
    pub has_more: bool,
    /// This page's emails, best match first.
    pub emails: Vec<Email>,
}

// ANCHOR: search_sql
/// Runs `query`: the count, then one page ordered by rank (then newest first, then id, so the
/// order is total and pages never overlap).
pub async fn search(store: &Store, query: &SearchQuery) -> Result<SearchPage, StoreError> {
    let offset = (query.page - 1) * query.size;
    let (total, rows) = if query.text.is_empty() {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM email").fetch_one(store.pool()).await?;
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EMAIL_COLUMNS} FROM email
             ORDER BY created_at DESC, email_id DESC LIMIT $1 OFFSET $2"
        )))
        .bind(query.size)
        .bind(offset)
        .fetch_all(store.pool())
        .await?;
        (total, rows)
    } else {
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM email WHERE search @@ websearch_to_tsquery('english', $1)",
        )
        .bind(&query.text)
        .fetch_one(store.pool())
        .await?;
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EMAIL_COLUMNS} FROM email, websearch_to_tsquery('english', $1) AS q
             WHERE search @@ q
             ORDER BY ts_rank(search, q) DESC, created_at DESC, email_id DESC
             LIMIT $2 OFFSET $3"
        )))
        .bind(&query.text)
        .bind(query.size)
        .bind(offset)
        .fetch_all(store.pool())
        .await?;
        (total, rows)
    };
    let emails = rows.into_iter().map(email_from_row).collect::<Result<Vec<_>, _>>()?;
    let total_pages = (total + query.size - 1) / query.size;
    Ok(SearchPage {
        total_count: total,
        total_pages,
        page: query.page,
        size: query.size,
        has_more: query.page < total_pages,
        emails,
    })
}
// ANCHOR_END: search_sql

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_parameter() {
        assert!(SearchQuery::new(None, None, None).is_ok());
        assert!(SearchQuery::new(Some("x".into()), Some(1), Some(100)).is_ok());
        for (page, size, field) in [
            (Some(0), None, "page"),
            (Some(-1), None, "page"),
            (Some(MAX_PAGE + 1), None, "page"),
            (None, Some(0), "size"),
            (None, Some(101), "size"),
            (None, Some(-5), "size"),
        ] {
            assert_eq!(SearchQuery::new(None, page, size).unwrap_err().field, field);
        }
        assert_eq!(SearchQuery::new(Some("x".repeat(257)), None, None).unwrap_err().field, "search");
    }
}
