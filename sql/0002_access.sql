-- Access: API keys, channels created by REST (with their config), monthly usage counters.
CREATE SCHEMA IF NOT EXISTS nuvem_realtime;

CREATE TABLE nuvem_realtime.api_keys (
    key_id           text PRIMARY KEY,                 -- public id: "key_" + 16 hex of sha256(key)
    key_hash         bytea NOT NULL UNIQUE,            -- sha256 of the plaintext key (never stored)
    prefix           text NOT NULL,                    -- first characters, for people to recognise a key
    signing_secret   bytea NOT NULL,                   -- HMAC-SHA256(key, label): verifies user tokens
    owner_id         text NOT NULL,                    -- limits are counted per owner
    plan             text NOT NULL CHECK (plan IN ('free', 'builder', 'scale')),
    kind             text NOT NULL CHECK (kind IN ('secret', 'publishable')),
    channel_patterns text[] NOT NULL DEFAULT ARRAY['*'],
    test_mode        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
CREATE INDEX api_keys_owner_idx ON nuvem_realtime.api_keys (owner_id);

CREATE TABLE nuvem_realtime.channels (
    id                        text PRIMARY KEY,        -- "ch_" + 16 hex
    name                      text NOT NULL UNIQUE,
    max_connections           integer CHECK (max_connections > 0),
    rate_limit_messages       integer CHECK (rate_limit_messages > 0),
    rate_limit_window_seconds double precision CHECK (rate_limit_window_seconds > 0),
    history_max_count         integer CHECK (history_max_count >= 0),
    history_max_age_seconds   double precision CHECK (history_max_age_seconds > 0),
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_limit_messages IS NULL) = (rate_limit_window_seconds IS NULL))
);

CREATE TABLE nuvem_realtime.usage_monthly (
    owner_id   text NOT NULL,
    month      date NOT NULL,                          -- first day of the UTC month
    messages   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, month)
);
