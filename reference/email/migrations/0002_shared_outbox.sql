-- The outbox takes the shape every JetStream publisher here shares (pkg/jetstream): a subject per
-- row and a generic message id, so one relay serves the email service and the notes services.
-- Rows waiting at migration time are `email.send` events (production has no subject prefix).
ALTER TABLE email_outbox RENAME TO outbox;
ALTER TABLE outbox RENAME COLUMN id TO seq;
ALTER TABLE outbox RENAME COLUMN email_id TO msg_id;
ALTER TABLE outbox ADD COLUMN subject text NOT NULL DEFAULT 'email.send';
ALTER TABLE outbox ALTER COLUMN subject DROP DEFAULT;
