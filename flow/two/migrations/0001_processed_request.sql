-- Request ids two has delivered to the third party: a redelivered message is skipped.
CREATE TABLE processed_request (
    request_id         text        PRIMARY KEY,
    third_party_status integer     NOT NULL,
    processed_at       timestamptz NOT NULL DEFAULT now()
);
