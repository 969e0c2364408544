-- Emails, their send events waiting in the outbox, and idempotency keys.

-- ANCHOR: search_document
-- The search document: subject weighs most, then the addresses, then the body. A function so the
-- generated column below can use array_to_string (only STABLE on its own); it is immutable for
-- these argument types and a fixed text search configuration.
CREATE FUNCTION email_search_document(subject text, sender text, recipients text[], message text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector('english', subject), 'A')
        || setweight(to_tsvector('simple', sender || ' ' || array_to_string(recipients, ' ')), 'B')
        || setweight(to_tsvector('english', message), 'C')
$$;
-- ANCHOR_END: search_document

CREATE TABLE email (
    email_id    uuid        PRIMARY KEY,              -- UUID v7: time-ordered, so the index stays compact
    sender      text        NOT NULL,
    recipients  text[]      NOT NULL CHECK (cardinality(recipients) BETWEEN 1 AND 50),
    subject     text        NOT NULL,
    message     text        NOT NULL,
    status      text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    search      tsvector    GENERATED ALWAYS AS
                    (email_search_document(subject, sender, recipients, message)) STORED
);

-- ANCHOR: search_index
CREATE INDEX email_search_idx ON email USING gin (search);
-- ANCHOR_END: search_index
CREATE INDEX email_created_idx ON email (created_at DESC, email_id DESC);

-- ANCHOR: outbox_table
-- The transactional outbox: one row per `email.send` event, written in the same transaction as
-- the email; the relay publishes it to JetStream and deletes it.
CREATE TABLE email_outbox (
    id         bigserial   PRIMARY KEY,
    email_id   uuid        NOT NULL REFERENCES email (email_id),
    payload    jsonb       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
-- ANCHOR_END: outbox_table

-- Idempotency keys: stored with the email in the same transaction, so a retry with the same key
-- and body gets the same email id and sends nothing twice.
CREATE TABLE email_idempotency_key (
    key          text        PRIMARY KEY,
    request_hash text        NOT NULL,
    email_id     uuid        NOT NULL REFERENCES email (email_id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
