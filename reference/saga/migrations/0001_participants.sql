-- Each participant owns a schema: in production they are separate services with separate
-- databases; here they share a server so one `make up` runs them all.
--
-- Every participant has an `idempotency` table keyed by `<saga id>:<step>`: the first call with a
-- key records its outcome in the same transaction as its effect, and a repeated call returns that
-- outcome and changes nothing. A compensation that finds no row leaves a `compensated` tombstone,
-- so a late, retried or duplicated call of the step can no longer apply.
CREATE SCHEMA orders;
CREATE TABLE orders.orders (
    id         uuid        PRIMARY KEY,
    user_id    text        NOT NULL,
    total      bigint      NOT NULL, -- minor units (cents)
    status     text        NOT NULL CHECK (status IN ('created', 'cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders.order_items (
    order_id   uuid    NOT NULL REFERENCES orders.orders (id),
    line       integer NOT NULL,
    product_id text    NOT NULL,
    quantity   integer NOT NULL CHECK (quantity > 0),
    price      bigint  NOT NULL CHECK (price >= 0),
    PRIMARY KEY (order_id, line)
);

CREATE SCHEMA payments;
CREATE TABLE payments.payments (
    id         uuid        PRIMARY KEY,
    order_id   uuid        NOT NULL,
    amount     bigint      NOT NULL,
    status     text        NOT NULL CHECK (status IN ('captured', 'refunded')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA inventory;
CREATE TABLE inventory.stock (
    product_id text   PRIMARY KEY,
    available  bigint NOT NULL CHECK (available >= 0)
);
-- The seed's stock.
INSERT INTO inventory.stock (product_id, available)
VALUES ('product_1', 100), ('product_2', 50), ('product_3', 200);
CREATE TABLE inventory.reservations (
    id          uuid        PRIMARY KEY,
    order_id    uuid        NOT NULL,
    product_id  text        NOT NULL REFERENCES inventory.stock (product_id),
    quantity    bigint      NOT NULL CHECK (quantity > 0),
    status      text        NOT NULL CHECK (status IN ('reserved', 'released')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_order ON inventory.reservations (order_id);

CREATE SCHEMA shipping;
CREATE TABLE shipping.shipments (
    id              uuid        PRIMARY KEY,
    order_id        uuid        NOT NULL,
    tracking_number text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('scheduled', 'cancelled')),
    scheduled_for   timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['orders', 'payments', 'inventory', 'shipping'] LOOP
        EXECUTE format(
            'CREATE TABLE %I.idempotency (
                 key        text        PRIMARY KEY,
                 state      text        NOT NULL CHECK (state IN (''done'', ''rejected'', ''compensated'')),
                 reference  text,
                 error      text,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now()
             )', s);
    END LOOP;
END $$;
