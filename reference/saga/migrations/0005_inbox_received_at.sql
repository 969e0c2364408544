-- Inbox rows are deleted once they are older than the choreography's inbox retention: this index
-- lets each chunk find the oldest rows without reading the table.
DO $$
DECLARE s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['orders', 'payments', 'inventory', 'shipping'] LOOP
        EXECUTE format('CREATE INDEX inbox_received_at ON %I.inbox (received_at)', s);
    END LOOP;
END $$;
