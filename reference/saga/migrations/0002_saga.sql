-- The orchestrator's state: one row per saga, written before each participant call and after
-- each answer. `steps` holds every step's state, attempts, error and result.
CREATE SCHEMA saga;
CREATE TABLE saga.sagas (
    id          uuid        PRIMARY KEY,
    order_id    uuid        NOT NULL UNIQUE,
    status      text        NOT NULL CHECK (status IN
                    ('pending', 'running', 'completed', 'compensating', 'compensated', 'failed')),
    input       jsonb       NOT NULL,
    steps       jsonb       NOT NULL,
    -- Which orchestrator replica drives it, until when; a replica that dies stops renewing.
    lease_owner text,
    lease_until timestamptz,
    version     bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Replicas look only for unfinished sagas.
CREATE INDEX sagas_active ON saga.sagas (created_at)
    WHERE status IN ('pending', 'running', 'compensating');
