-- Core: the schema, channel offsets and message history.
CREATE SCHEMA IF NOT EXISTS nuvem_realtime;

-- The latest offset assigned on each channel (offsets are 1, 2, 3, ... per channel, never reused).
CREATE TABLE nuvem_realtime.channel_offsets (
    channel text PRIMARY KEY,
    latest  bigint NOT NULL CHECK (latest >= 0)
);

-- Every accepted message, until retention (per channel, by count and age) drops it.
CREATE TABLE nuvem_realtime.history (
    channel      text NOT NULL,
    msg_offset   bigint NOT NULL,
    event        text NOT NULL,
    payload      jsonb,
    publisher    text,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (channel, msg_offset)
);
CREATE INDEX history_published_at_idx ON nuvem_realtime.history (published_at);
