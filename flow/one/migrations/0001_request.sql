-- The stored requests (same table as the Go original).
CREATE TABLE request (
    req_id     text PRIMARY KEY,
    user_id    text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    req        jsonb       NOT NULL
);
