-- Idempotency keys: the first response for a key is stored in the same transaction as the
-- request row, so a retry with the same key gets the same answer and writes nothing.
CREATE TABLE idempotency_key (
    key             text        PRIMARY KEY,
    request_hash    text        NOT NULL,
    response_status integer     NOT NULL,
    response_body   jsonb       NOT NULL,
    req_id          text        NOT NULL REFERENCES request (req_id),
    created_at      timestamptz NOT NULL DEFAULT now()
);
