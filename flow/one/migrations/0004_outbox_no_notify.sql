-- The relay is woken in-process by the request path after each commit, and polls for rows other
-- replicas wrote. A NOTIFY at commit takes a global lock that serialises every committing
-- transaction of the database, which capped POST /one far below what PostgreSQL can commit.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
