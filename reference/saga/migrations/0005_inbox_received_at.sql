-- Inbox rows are deleted once they are older than the choreography's inbox retention: this index
-- lets each chunk find the oldest rows without reading the table (event ids are random UUIDs, so
-- the primary key says nothing about age). Building it locks the inbox against writes for as long
-- as the build takes: on a large inbox, run `CREATE INDEX CONCURRENTLY IF NOT EXISTS
-- inbox_received_at ON <schema>.inbox (received_at)` by hand before deploying, and this migration
-- then finds it there.
DO $$
DECLARE s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['orders', 'payments', 'inventory', 'shipping'] LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS inbox_received_at ON %I.inbox (received_at)', s);
    END LOOP;
END $$;
