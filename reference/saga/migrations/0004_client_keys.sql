-- POST /orders with an `Idempotency-Key`: the key and a hash of the validated order it came with
-- are kept on the saga, so a client retrying after a lost answer gets the same saga back instead
-- of a second order, and a key reused with another order is refused. UNIQUE allows any number of
-- sagas without a key (NULLs are distinct).
ALTER TABLE saga.sagas
    ADD COLUMN client_key   text UNIQUE CHECK (length(client_key) BETWEEN 1 AND 255),
    ADD COLUMN request_hash bytea CHECK ((client_key IS NULL) = (request_hash IS NULL));
