-- Transactions whose downstream call failed; the retry job works through the `failed` ones.
CREATE TABLE failed_transaction (
    id         bigserial   PRIMARY KEY,
    payload    jsonb       NOT NULL,
    status     text        NOT NULL DEFAULT 'failed' CHECK (status IN ('failed', 'done')),
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX failed_transaction_failed ON failed_transaction (id) WHERE status = 'failed';
