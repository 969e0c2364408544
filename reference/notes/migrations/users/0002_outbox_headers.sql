-- The outbox takes the shape every JetStream publisher here shares (pkg/jetstream): each row keeps
-- the headers it is published with, the writer's trace context among them.
ALTER TABLE outbox ADD COLUMN headers jsonb NOT NULL DEFAULT '{}';
