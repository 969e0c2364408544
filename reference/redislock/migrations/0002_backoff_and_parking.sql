-- A row is attempted at most once per backoff period: the job claims it by setting
-- `last_attempt_at` and moving `next_attempt_at` forward (under the lock, conditionally), so
-- another replica's round does not see it as due. After `max_attempts` failed retries it is
-- `parked`: no longer retried, kept for an operator
-- (`SELECT id, attempts, last_error FROM failed_transaction WHERE status = 'parked'`).
ALTER TABLE failed_transaction
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_attempt_at timestamptz;
ALTER TABLE failed_transaction DROP CONSTRAINT failed_transaction_status_check;
ALTER TABLE failed_transaction
    ADD CONSTRAINT failed_transaction_status_check CHECK (status IN ('failed', 'done', 'parked'));
DROP INDEX failed_transaction_failed;
CREATE INDEX failed_transaction_due ON failed_transaction (next_attempt_at, id) WHERE status = 'failed';
CREATE INDEX failed_transaction_parked ON failed_transaction (id) WHERE status = 'parked';
