-- The product service's own database.
CREATE TABLE products (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    price_cents  bigint NOT NULL CHECK (price_cents >= 0),
    -- The last line of defence against overselling; the reserve statement never gets here.
    stock        integer NOT NULL CHECK (stock >= 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per reservation id, the caller's idempotency key. A release that arrives before its
-- reserve leaves a 'released' row with no product, so the late reserve cannot take stock.
CREATE TABLE reservations (
    id          uuid PRIMARY KEY,
    product_id  uuid REFERENCES products (id),
    quantity    integer NOT NULL CHECK (quantity >= 0),
    state       text NOT NULL CHECK (state IN ('reserved', 'released')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_product ON reservations (product_id) WHERE state = 'reserved';
