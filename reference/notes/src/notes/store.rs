//! The notes service's use cases over its database. Each change and its event commit together
//! (the outbox); the event carries the note after the change and its audience.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{Body, NoteId, Title, UserId, Version};
use crate::error::ApiError;
use crate::events::{NoteEvent, NoteEventKind, NoteView};
use cruncan_jetstream::{enqueue, trace_headers};

/// The notes store: use cases that take validated types and the signed-in user.
#[derive(Clone)]
pub struct Notes {
    pool: PgPool,
    prefix: String,
}

#[derive(sqlx::FromRow)]
struct NoteRow {
    id: NoteId,
    owner_id: UserId,
    title: String,
    body: String,
    version: i64,
    updated_at: DateTime<Utc>,
    shared_with: Vec<Uuid>,
}

impl From<NoteRow> for NoteView {
    fn from(r: NoteRow) -> Self {
        Self {
            id: r.id,
            owner_id: r.owner_id,
            title: r.title,
            body: r.body,
            version: r.version,
            shared_with: r.shared_with.into_iter().map(UserId).collect(),
            updated_at: r.updated_at,
        }
    }
}

/// The note columns with its shares (a macro, so the queries stay `&'static str` literals).
macro_rules! select_note {
    () => {
        "SELECT n.id, n.owner_id, n.title, n.body, n.version, n.updated_at,
    COALESCE((SELECT array_agg(s.user_id ORDER BY s.user_id) FROM note_shares s WHERE s.note_id = n.id), '{}') AS shared_with
    FROM notes n"
    };
}

fn not_found(id: NoteId) -> ApiError {
    ApiError::NotFound(format!("no note {id}"))
}

impl Notes {
    /// The store over `pool`; events go to subjects with `prefix`.
    pub fn new(pool: PgPool, prefix: String) -> Self {
        Self { pool, prefix }
    }

    /// The notes `user` owns or has been shared, newest change first.
    pub async fn list(&self, user: UserId) -> Result<Vec<NoteView>, ApiError> {
        let rows: Vec<NoteRow> = sqlx::query_as(concat!(
            select_note!(),
            " WHERE n.owner_id = $1
               OR EXISTS (SELECT 1 FROM note_shares s WHERE s.note_id = n.id AND s.user_id = $1)
             ORDER BY n.updated_at DESC LIMIT 500"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One note `user` can see.
    pub async fn get(&self, user: UserId, id: NoteId) -> Result<NoteView, ApiError> {
        let mut conn = self.pool.acquire().await?;
        let note = read(&mut conn, id, false).await?.ok_or_else(|| not_found(id))?;
        if note.audience().contains(&user) { Ok(note) } else { Err(not_found(id)) }
    }

    /// A new note owned by `owner`.
    pub async fn create(&self, owner: UserId, title: Title, body: Body) -> Result<NoteView, ApiError> {
        let id = NoteId(Uuid::now_v7());
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO notes (id, owner_id, title, body, version) VALUES ($1, $2, $3, $4, 1)")
            .bind(id)
            .bind(owner)
            .bind(title.as_str())
            .bind(body.as_str())
            .execute(&mut *tx)
            .await?;
        let note = read(&mut tx, id, false).await?.ok_or_else(|| not_found(id))?;
        self.emit(&mut tx, NoteEventKind::Created, &note, owner, note.audience()).await?;
        tx.commit().await?;
        Ok(note)
    }

    // ANCHOR: update
    /// Changes title and body if the note is still at `expected` (optimistic concurrency): the
    /// version check and the bump are one `UPDATE`, so of two edits made on the same version
    /// exactly one wins; the other gets 409 with the current version. Owner and the users it is
    /// shared with may edit.
    pub async fn update(
        &self,
        user: UserId,
        id: NoteId,
        expected: Version,
        title: Title,
        body: Body,
    ) -> Result<NoteView, ApiError> {
        let mut tx = self.pool.begin().await?;
        let current = read(&mut tx, id, true).await?.ok_or_else(|| not_found(id))?;
        if !current.audience().contains(&user) {
            return Err(not_found(id));
        }
        let updated = sqlx::query(
            "UPDATE notes SET title = $3, body = $4, version = version + 1, updated_at = now()
             WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(i64::from(expected))
        .bind(title.as_str())
        .bind(body.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(ApiError::Conflict {
                code: "stale_version",
                message: format!(
                    "version: the note is at version {}, the edit was made on {}; reload and retry",
                    current.version,
                    i64::from(expected)
                ),
                current_version: Some(current.version),
            });
        }
        let note = read(&mut tx, id, false).await?.ok_or_else(|| not_found(id))?;
        self.emit(&mut tx, NoteEventKind::Updated, &note, user, note.audience()).await?;
        tx.commit().await?;
        Ok(note)
    }
    // ANCHOR_END: update

    // ANCHOR: share
    /// Shares the note with `with`, who must be in this service's own copy of the users (filled
    /// from `user.created`): an unknown user is a 422 naming `user_id`. Only the owner shares.
    /// Sharing twice is harmless (no second event).
    pub async fn share(&self, user: UserId, id: NoteId, with: UserId) -> Result<NoteView, ApiError> {
        let mut tx = self.pool.begin().await?;
        let current = read(&mut tx, id, true).await?.ok_or_else(|| not_found(id))?;
        if !current.audience().contains(&user) {
            return Err(not_found(id));
        }
        if current.owner_id != user {
            return Err(ApiError::Forbidden("only the owner shares a note".into()));
        }
        let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM known_users WHERE id = $1)")
            .bind(with)
            .fetch_one(&mut *tx)
            .await?;
        if !known {
            return Err(ApiError::Unprocessable { field: "user_id", message: format!("no user {with}") });
        }
        if with == current.owner_id || current.shared_with.contains(&with) {
            return Ok(current);
        }
        sqlx::query("INSERT INTO note_shares (note_id, user_id) VALUES ($1, $2)")
            .bind(id)
            .bind(with)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE notes SET version = version + 1, updated_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let note = read(&mut tx, id, false).await?.ok_or_else(|| not_found(id))?;
        self.emit(&mut tx, NoteEventKind::Shared, &note, user, note.audience()).await?;
        tx.commit().await?;
        Ok(note)
    }
    // ANCHOR_END: share

    /// Deletes the note; only the owner may. Everyone who could see it is told.
    pub async fn delete(&self, user: UserId, id: NoteId) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await?;
        let note = read(&mut tx, id, true).await?.ok_or_else(|| not_found(id))?;
        if !note.audience().contains(&user) {
            return Err(not_found(id));
        }
        if note.owner_id != user {
            return Err(ApiError::Forbidden("only the owner deletes a note".into()));
        }
        sqlx::query("DELETE FROM notes WHERE id = $1").bind(id).execute(&mut *tx).await?;
        self.emit(&mut tx, NoteEventKind::Deleted, &note, user, note.audience()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn emit(
        &self,
        tx: &mut PgConnection,
        kind: NoteEventKind,
        note: &NoteView,
        by: UserId,
        audience: Vec<UserId>,
    ) -> anyhow::Result<()> {
        let event =
            NoteEvent { event_id: Uuid::now_v7(), kind, note: note.clone(), audience, by, at: Utc::now() };
        let subject = format!("{}{}", self.prefix, kind.subject());
        enqueue(tx, &subject, event.event_id, &event, &trace_headers()).await
    }
}

/// The note with its shares; `lock` takes the row lock that serialises changes to one note.
async fn read(conn: &mut PgConnection, id: NoteId, lock: bool) -> Result<Option<NoteView>, ApiError> {
    let sql = if lock {
        concat!(select_note!(), " WHERE n.id = $1 FOR UPDATE OF n")
    } else {
        concat!(select_note!(), " WHERE n.id = $1")
    };
    let row: Option<NoteRow> = sqlx::query_as(sql).bind(id).fetch_optional(conn).await?;
    Ok(row.map(Into::into))
}
