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
