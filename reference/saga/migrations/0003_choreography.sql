-- Choreography: each participant reacts to events and publishes its own through an outbox
-- written in the same transaction as its effect, and remembers the events it handled (inbox),
-- so a redelivered event changes nothing.
ALTER TABLE orders.orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders.orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('created', 'confirmed', 'cancelled'));

DO $$
DECLARE s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['orders', 'payments', 'inventory', 'shipping'] LOOP
        EXECUTE format(
            'CREATE TABLE %I.outbox (
                 id         bigserial   PRIMARY KEY,
                 topic      text        NOT NULL,
                 key        text        NOT NULL,
                 payload    bytea       NOT NULL,
                 headers    jsonb       NOT NULL DEFAULT ''{}''::jsonb,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 sent_at    timestamptz,
                 attempts   integer     NOT NULL DEFAULT 0,
                 last_error text
             )', s);
        EXECUTE format('CREATE INDEX outbox_pending ON %I.outbox (id) WHERE sent_at IS NULL', s);
        EXECUTE format(
            'CREATE TABLE %I.inbox (
                 event_id    uuid        PRIMARY KEY,
                 event_type  text        NOT NULL,
                 duplicates  integer     NOT NULL DEFAULT 0,
                 received_at timestamptz NOT NULL DEFAULT now()
             )', s);
    END LOOP;
END $$;
