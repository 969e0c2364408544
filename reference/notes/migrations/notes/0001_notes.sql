-- The notes service's own database: its copy of the users (filled from user.created events),
-- the notes with their versions and shares, and the outbox its events leave through.
CREATE TABLE known_users (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    event_id    uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notes (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    version    bigint NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notes_owner ON notes (owner_id);

CREATE TABLE note_shares (
    note_id uuid NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES known_users (id),
    PRIMARY KEY (note_id, user_id)
);
CREATE INDEX note_shares_user ON note_shares (user_id);

CREATE TABLE outbox (
    seq        bigserial PRIMARY KEY,
    subject    text NOT NULL,
    msg_id     uuid NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
