-- The order service's own database: the order is written as 'pending' before any stock is
-- reserved, so a crash or a failure always leaves a record of what to release.
CREATE TABLE orders (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled', 'release_pending')),
    total_cents  bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    order_id        uuid NOT NULL REFERENCES orders (id),
    position        integer NOT NULL,
    product_id      uuid NOT NULL,
    quantity        integer NOT NULL CHECK (quantity > 0),
    price_cents     bigint NOT NULL,
    reservation_id  uuid NOT NULL UNIQUE,
    PRIMARY KEY (order_id, position)
);
CREATE INDEX orders_unfinished ON orders (updated_at) WHERE status IN ('pending', 'release_pending');
