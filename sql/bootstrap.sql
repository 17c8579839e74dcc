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
