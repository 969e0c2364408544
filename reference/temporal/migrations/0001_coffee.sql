-- The coffee shop's side effects. Every row is keyed by an idempotency key that the workflow
-- derives from its workflow id and the step, so an activity that runs twice (a retry, or a new
-- worker after a crash) finds its own earlier effect instead of making a second one.
CREATE TABLE coffee_order (
    order_id    TEXT PRIMARY KEY,
    customer    TEXT NOT NULL,
    drinks      TEXT[] NOT NULL,
    total_cents BIGINT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE coffee_charge (
    idempotency_key TEXT PRIMARY KEY,
    charge_id       TEXT NOT NULL UNIQUE,
    order_id        TEXT NOT NULL REFERENCES coffee_order (order_id),
    amount_cents    BIGINT NOT NULL,
    card            TEXT NOT NULL,
    attempt         INT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE coffee_refund (
    idempotency_key TEXT PRIMARY KEY,
    refund_id       TEXT NOT NULL UNIQUE,
    charge_id       TEXT NOT NULL REFERENCES coffee_charge (charge_id),
    amount_cents    BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A cup is taken when brewing starts (the effect); ready_at is set when it is done.
CREATE TABLE coffee_brew (
    idempotency_key TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES coffee_order (order_id),
    position        INT NOT NULL,
    drink           TEXT NOT NULL,
    started_attempt INT NOT NULL,
    ready_attempt   INT,
    ready_at        TIMESTAMPTZ
);
