-- Inbox rows are deleted once they are older than the choreography's inbox retention: this index
-- lets each chunk find the oldest rows without reading the table (event ids are random UUIDs, so
-- the primary key says nothing about age). Building them locks the four inboxes against writes
-- until this migration commits: on large inboxes, run `CREATE INDEX CONCURRENTLY IF NOT EXISTS
-- inbox_received_at ON <schema>.inbox (received_at)` by hand before deploying, check that
-- `pg_index.indisvalid` is true (drop and rebuild an invalid one: IF NOT EXISTS accepts it, and
-- the planner ignores it), and this migration then finds them there.
DO $$
DECLARE s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['orders', 'payments', 'inventory', 'shipping'] LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS inbox_received_at ON %I.inbox (received_at)', s);
    END LOOP;
END $$;
