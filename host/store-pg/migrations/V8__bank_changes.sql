-- The virtual bank's changes made through a node's admin API or portal
-- (institutions, their contract accounts, limits and states), in the order
-- every node applies them to its own bank (docs/adr/0030). Keyed by the
-- config version each change bumped to: the version row's lock orders the
-- bumps, so changes commit in key order and a node that has applied every
-- change up to N never finds a smaller one later.
CREATE TABLE vbank_changes (
    version bigint      PRIMARY KEY CHECK (version > 0),
    change  jsonb       NOT NULL CHECK (jsonb_typeof(change) = 'object' AND change ? 'op'),
    made_at timestamptz NOT NULL DEFAULT now()
);
