//! Products and reservations in PostgreSQL.

use super::Product;
use crate::error::{ApiError, db};
use sqlx::PgPool;
use uuid::Uuid;

/// The product service's migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/products");

/// What a reserve did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// The stock is taken (now, or by an earlier call with the same id).
    Taken,
    /// No such product.
    UnknownProduct,
    /// Not enough stock; nothing changed.
    Insufficient,
    /// The id was released already, or was used for another product or quantity.
    KeyReused,
}

/// The `products` and `reservations` tables.
#[derive(Debug, Clone)]
pub struct ProductStore(pub PgPool);

type Row = (Uuid, String, String, i64, i32, chrono::DateTime<chrono::Utc>);

impl ProductStore {
    /// Inserts a product.
    pub async fn create(
        &self,
        name: &str,
        description: &str,
        price: i64,
        stock: i32,
    ) -> Result<Product, ApiError> {
        let (id, name, description, price_cents, stock, created_at): Row = sqlx::query_as(
            "INSERT INTO products (id, name, description, price_cents, stock) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, name, description, price_cents, stock, created_at",
        )
        .bind(Uuid::new_v4())
        .bind(name)
        .bind(description)
        .bind(price)
        .bind(stock)
        .fetch_one(&self.0)
        .await
        .map_err(db)?;
        Ok(Product { id, name, description, price_cents, stock, created_at })
    }

    /// A product by id.
    pub async fn get(&self, id: Uuid) -> Result<Option<Product>, ApiError> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, name, description, price_cents, stock, created_at FROM products WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.0)
        .await
        .map_err(db)?;
        Ok(row.map(|(id, name, description, price_cents, stock, created_at)| Product {
            id,
            name,
            description,
            price_cents,
            stock,
            created_at,
        }))
    }

    // ANCHOR: reserve
    /// Takes `quantity` units under reservation `id`, in one transaction: the key row first (a
    /// repeat finds it and changes nothing), then one conditional update — no read-then-write,
    /// so two concurrent reserves can never both take the last unit.
    pub async fn reserve(&self, id: Uuid, product: Uuid, quantity: i32) -> Result<Reserve, ApiError> {
        let mut tx = self.0.begin().await.map_err(db)?;
        let fresh = sqlx::query(
            "INSERT INTO reservations (id, product_id, quantity, state) VALUES ($1, $2, $3, 'reserved')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(product)
        .bind(quantity)
        .execute(&mut *tx)
        .await;
        let fresh = match fresh {
            Ok(done) => done.rows_affected() == 1,
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Ok(Reserve::UnknownProduct);
            }
            Err(e) => return Err(db(e)),
        };
        if !fresh {
            // A retry, or a release that came first: the committed row decides.
            let (p, q, state): (Option<Uuid>, i32, String) =
                sqlx::query_as("SELECT product_id, quantity, state FROM reservations WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            let same = p == Some(product) && q == quantity && state == "reserved";
            return Ok(if same { Reserve::Taken } else { Reserve::KeyReused });
        }
        let taken = sqlx::query("UPDATE products SET stock = stock - $2 WHERE id = $1 AND stock >= $2")
            .bind(product)
            .bind(quantity)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if taken == 0 {
            // Dropping `tx` rolls the key row back too: a later retry may still succeed.
            return Ok(Reserve::Insufficient);
        }
        tx.commit().await.map_err(db)?;
        Ok(Reserve::Taken)
    }
    // ANCHOR_END: reserve

    // ANCHOR: release
    /// Gives reservation `id` back. Unknown ids get a `released` tombstone first, so a reserve
    /// still on its way (the caller gave up on it) can no longer take stock when it lands.
    pub async fn release(&self, id: Uuid) -> Result<(), ApiError> {
        let mut tx = self.0.begin().await.map_err(db)?;
        let tombstone = sqlx::query(
            "INSERT INTO reservations (id, product_id, quantity, state) VALUES ($1, NULL, 0, 'released')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if tombstone == 0 {
            // The row exists (the INSERT waited for a concurrent reserve to commit): lock it.
            let row: Option<(Option<Uuid>, i32)> = sqlx::query_as(
                "UPDATE reservations SET state = 'released', updated_at = now()
                 WHERE id = $1 AND state = 'reserved' RETURNING product_id, quantity",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some((Some(product), quantity)) = row {
                sqlx::query("UPDATE products SET stock = stock + $2 WHERE id = $1")
                    .bind(product)
                    .bind(quantity)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }
    // ANCHOR_END: release
}
