-- The user service's own database.
CREATE TABLE users (
    id          uuid PRIMARY KEY,
    email       text NOT NULL,
    name        text NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- One account per address, whatever its case: the constraint, not a read-then-insert, decides.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
