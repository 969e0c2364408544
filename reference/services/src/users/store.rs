//! Users in PostgreSQL.

use super::{NewUser, User};
use crate::error::{ApiError, db};
use sqlx::PgPool;
use uuid::Uuid;

/// The user service's migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/users");

/// The `users` table.
#[derive(Debug, Clone)]
pub struct UserStore(pub PgPool);

type Row = (Uuid, String, String, bool, chrono::DateTime<chrono::Utc>);

fn user((id, email, name, active, created_at): Row) -> User {
    User { id, email, name, active, created_at }
}

impl UserStore {
    /// Inserts a user; a taken e-mail (any case) is a 409 decided by the unique index.
    pub async fn create(&self, new: &NewUser) -> Result<User, ApiError> {
        let row: Result<Row, _> = sqlx::query_as(
            "INSERT INTO users (id, email, name) VALUES ($1, $2, $3)
             RETURNING id, email, name, active, created_at",
        )
        .bind(Uuid::new_v4())
        .bind(&new.email)
        .bind(&new.name)
        .fetch_one(&self.0)
        .await;
        match row {
            Ok(row) => Ok(user(row)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ApiError::Conflict {
                code: "email_taken",
                message: format!("a user with e-mail {} exists", new.email),
            }),
            Err(e) => Err(db(e)),
        }
    }

    /// A user by id.
    pub async fn get(&self, id: Uuid) -> Result<Option<User>, ApiError> {
        let row: Option<Row> =
            sqlx::query_as("SELECT id, email, name, active, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.0)
                .await
                .map_err(db)?;
        Ok(row.map(user))
    }
}
