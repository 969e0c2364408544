-- The user service's own database: its users, and the outbox its events leave through.
CREATE TABLE users (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    seq        bigserial PRIMARY KEY,
    subject    text NOT NULL,
    msg_id     uuid NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
