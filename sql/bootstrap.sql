-- The extension's own state lives in schema linked_audiences, which no one but its
-- owner can use until la_grant says otherwise.
CREATE SCHEMA linked_audiences;
REVOKE ALL ON SCHEMA linked_audiences FROM PUBLIC;

-- The one Data Graph: its JSON form and where each table_ref resolved when it was
-- defined.
CREATE TABLE linked_audiences.data_graph (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    graph      jsonb NOT NULL,
    tables     jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.data_graph', '');

-- Audiences: the current definition of each key, and every version it has had.
CREATE TABLE linked_audiences.audience (
    id            bigserial PRIMARY KEY,
    key           text NOT NULL UNIQUE CHECK (key ~ '^[a-z][a-z0-9_]{0,62}$'),
    name          text,
    description   text,
    version       integer NOT NULL DEFAULT 1,
    enabled       boolean NOT NULL DEFAULT true,
    definition    jsonb NOT NULL,
    depends_on    text[] NOT NULL DEFAULT '{}',
    relationships text[] NOT NULL DEFAULT '{}',
    last_run_id   bigint,
    -- The relationships whose entities computes keep in audience_entities (those an
    -- enabled Entity Added/Removed activation names), as of the last compute.
    tracked       text[] NOT NULL DEFAULT '{}',
    -- The role that defined it: the real-time worker computes it as that role.
    owner         name NOT NULL DEFAULT CURRENT_USER,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE linked_audiences.audience_version (
    audience_id bigint NOT NULL REFERENCES linked_audiences.audience ON DELETE CASCADE,
    version     integer NOT NULL,
    definition  jsonb NOT NULL,
    name        text,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (audience_id, version)
);
CREATE VIEW linked_audiences.audiences AS
SELECT id, key, name, description, version, enabled, definition, depends_on, created_at, updated_at
FROM linked_audiences.audience;
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.audience', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.audience_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.audience_version', '');

-- Which literals do not convert to their column's type: [{path, error}]. Each cast
-- runs in its own subtransaction (the EXCEPTION block), so a bad value is reported
-- as data. The type goes through to_regtype, so only a real type name is spliced.
CREATE FUNCTION linked_audiences.literal_problems(checks jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c jsonb;
    t regtype;
    bad jsonb := '[]';
BEGIN
    FOR c IN SELECT value FROM jsonb_array_elements(checks) LOOP
        t := to_regtype(c->>'type');
        IF t IS NULL THEN
            bad := bad || jsonb_build_object('path', c->>'path', 'error', format('type %s does not exist', c->>'type'));
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('SELECT $1::%s', t) USING c->>'value';
        EXCEPTION WHEN others THEN
            bad := bad || jsonb_build_object('path', c->>'path', 'error', SQLERRM);
        END;
    END LOOP;
    RETURN bad;
END
$$;

-- Destinations and activations: which changes of which audience go where.
CREATE TABLE linked_audiences.destination (
    id         bigserial PRIMARY KEY,
    key        text NOT NULL UNIQUE CHECK (key ~ '^[a-z][a-z0-9_]{0,62}$'),
    preset     text NOT NULL CHECK (preset IN ('segment', 'braze', 'iterable', 'customerio', 'webhook')),
    settings   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE linked_audiences.activation (
    id             bigserial PRIMARY KEY,
    audience_id    bigint NOT NULL REFERENCES linked_audiences.audience,
    destination_id bigint NOT NULL REFERENCES linked_audiences.destination,
    event          text NOT NULL CHECK (event IN ('Audience Entered', 'Audience Exited',
                       'Audience Membership Changed', 'Entity Added', 'Entity Removed')),
    entity         text CHECK ((entity IS NOT NULL) = (event IN ('Entity Added', 'Entity Removed'))),
    properties     jsonb NOT NULL DEFAULT '{}',
    event_name     text,
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Also send the current members or entities at the first compute (Segment's "Send
    -- events for current profiles and entities").
    send_existing  boolean NOT NULL DEFAULT false,
    -- The first compute that sent this activation's events; NULL until then.
    first_run_id   bigint
);
CREATE INDEX ON linked_audiences.activation (audience_id);
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.destination', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.destination_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.activation', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.activation_id_seq', '');

-- Computed membership, its history, and the runs that produced them.
CREATE TABLE linked_audiences.runs (
    id               bigserial PRIMARY KEY,
    audience_id      bigint NOT NULL REFERENCES linked_audiences.audience ON DELETE CASCADE,
    audience_version integer,
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    status           text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    members          bigint,
    entered          bigint,
    exited           bigint,
    entities_added   bigint,
    entities_removed bigint,
    events_written   bigint,
    events_truncated bigint,
    error            text,
    -- What ran: full or incremental, and how many profiles it evaluated.
    mode             text,
    profiles_evaluated bigint
);
CREATE INDEX ON linked_audiences.runs (audience_id, id);
-- The high-volume tables below carry no foreign keys: a key is checked row by row, which
-- cost a first compute more than writing its rows. Only the extension's functions write
-- them; la_drop_audience and la_outbox_prune delete what a cascade would have.
CREATE TABLE linked_audiences.audience_members (
    audience_id bigint NOT NULL,
    profile_id  text NOT NULL,
    entered_at  timestamptz NOT NULL,
    PRIMARY KEY (audience_id, profile_id)
);
CREATE TABLE linked_audiences.audience_entities (
    audience_id  bigint NOT NULL,
    relationship text NOT NULL,
    profile_id   text NOT NULL,
    entity_id    text NOT NULL,
    added_at     timestamptz NOT NULL,
    PRIMARY KEY (audience_id, relationship, profile_id, entity_id)
);
CREATE TABLE linked_audiences.membership_changes (
    run_id       bigint NOT NULL,
    audience_id  bigint NOT NULL,
    profile_id   text NOT NULL,
    relationship text,
    entity_id    text,
    change       text NOT NULL CHECK (change IN ('entered', 'exited', 'entity_added', 'entity_removed')),
    at           timestamptz NOT NULL
);
CREATE INDEX ON linked_audiences.membership_changes (run_id);
CREATE INDEX ON linked_audiences.membership_changes (audience_id, profile_id);
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.runs', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.audience_members', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.audience_entities', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.membership_changes', '');

-- Computes in progress, as other sessions see them: a compute holds the advisory lock
-- (1279345491, audience id) for its whole transaction.
CREATE VIEW linked_audiences.running AS
SELECT a.key AS audience, s.pid, s.xact_start AS started_at, s.state, s.query
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity s ON s.pid = l.pid
JOIN linked_audiences.audience a ON a.id = l.objid::pg_catalog.int8
WHERE l.locktype = 'advisory' AND l.classid = 1279345491 AND l.objsubid = 2 AND l.granted;

-- The outbox: insert-only, Debezium outbox-router compatible (id, aggregatetype,
-- aggregateid, type, payload), plus the order (seq), the writing transaction (tx) and
-- the destination's action. Delivery state for SQL consumers lives beside it, in
-- outbox_state, so the outbox itself is never updated.
CREATE TABLE linked_audiences.outbox (
    id            uuid PRIMARY KEY,
    seq           bigserial NOT NULL UNIQUE,
    tx            xid8 NOT NULL DEFAULT pg_current_xact_id(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    aggregatetype text NOT NULL,
    aggregateid   text NOT NULL,
    type          text NOT NULL,
    payload       jsonb NOT NULL,
    destination   text NOT NULL,
    audience      text NOT NULL,
    activation_id bigint NOT NULL,
    action        text NOT NULL,
    mapped        jsonb NOT NULL,
    run_id        bigint
);
CREATE FUNCTION linked_audiences.outbox_is_insert_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'linked_audiences.outbox is insert-only'
        USING ERRCODE = '55000', HINT = 'Acknowledge rows with la_outbox_ack; remove old ones with la_outbox_prune.';
END
$$;
CREATE TRIGGER outbox_is_insert_only BEFORE UPDATE ON linked_audiences.outbox
    FOR EACH ROW EXECUTE FUNCTION linked_audiences.outbox_is_insert_only();
CREATE TABLE linked_audiences.outbox_state (
    id          uuid PRIMARY KEY,
    destination text NOT NULL,
    aggregateid text NOT NULL,
    seq         bigint NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'acked', 'dead')),
    attempts    integer NOT NULL DEFAULT 0,
    visible_at  timestamptz NOT NULL DEFAULT '-infinity',
    last_error  text,
    acked_at    timestamptz
);
CREATE INDEX outbox_state_pending ON linked_audiences.outbox_state (destination, seq) WHERE status = 'pending';
CREATE INDEX outbox_state_pending_user ON linked_audiences.outbox_state (destination, aggregateid, seq)
    WHERE status = 'pending';
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.outbox_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('linked_audiences.outbox_state', '');

-- Change capture for incremental computes (la_capture_changes). None of it is dumped:
-- after a restore, capture is turned on again and each audience computes in full once.
CREATE TABLE linked_audiences.capture (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled    boolean NOT NULL DEFAULT false,
    -- The transaction that turned capture on: a compute whose previous snapshot does not
    -- see it cannot rely on the log.
    started_tx xid8,
    -- The tables with capture triggers (quoted names).
    tables     jsonb NOT NULL DEFAULT '[]',
    -- Log rows of transactions before this one have been pruned.
    pruned_before xid8
);
INSERT INTO linked_audiences.capture DEFAULT VALUES;
-- The link values of every row a captured statement touched (old and new), by writing
-- transaction: shared by all audiences, each reading from its own position.
-- Unlogged: writers pay for a row in it on every captured statement, and without WAL
-- it costs them less. A crash empties it (and a standby or a physical backup never
-- has its rows); capture_alive tells that it happened.
CREATE UNLOGGED TABLE linked_audiences.change_log (
    tx       xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    relation text NOT NULL,
    col      text NOT NULL,
    value    text
);
CREATE INDEX change_log_tx ON linked_audiences.change_log (tx);
-- Unlogged too, emptied by the same crash: while capture is on it holds a row written
-- after the last crash (by the transaction in `since`, the one that turned capture on
-- or the first compute after the crash). An audience continues incrementally only from
-- a position whose snapshot sees such a row; every other computes in full once.
CREATE UNLOGGED TABLE linked_audiences.capture_alive (
    since xid8 NOT NULL
);
-- Where each audience's last compute left the warehouse: the snapshot taken before it
-- read anything, and a fingerprint of what it computed (its query and parameters, the
-- relationships it tracks, the graph): an incremental compute continues from there only
-- when the fingerprint is unchanged.
CREATE TABLE linked_audiences.compute_position (
    audience_id bigint PRIMARY KEY,
    snapshot    pg_snapshot NOT NULL,
    -- The computing transaction: what it wrote itself is after the snapshot.
    tx          xid8 NOT NULL,
    -- Its now(): conditions relative to the clock are continued from there.
    at          timestamptz NOT NULL,
    -- The audience has such conditions: it changes as time passes, without writes.
    clock       boolean NOT NULL DEFAULT false,
    fingerprint text NOT NULL
);
