-- Processed ids are deleted once they are older than `dedup.retention`: this index lets each
-- chunk find the oldest ids without reading the table.
CREATE INDEX processed_request_processed_at ON processed_request (processed_at);
