-- The configuration store: one row per key, its JSON value, its declared type and
-- who changed it last. Every rule a value must obey is a constraint here too, so a
-- DBA's raw SQL cannot store what the library would refuse.
CREATE SCHEMA IF NOT EXISTS amira_config;

CREATE TABLE amira_config.configurations (
    -- COLLATE "C": keys sort byte-wise, the same on every server whatever its
    -- locale, which keeps keyset pagination and prefix scans stable.
    key         text COLLATE "C" PRIMARY KEY,
    value       jsonb       NOT NULL,
    data_type   text        NOT NULL,
    description text,
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,

    CONSTRAINT configurations_key_length
        CHECK (char_length(key) BETWEEN 1 AND 255),
    -- The same characters amira_data_access.codec refuses: ASCII control and
    -- space, DEL, C1 controls, NO-BREAK SPACE and the Unicode spaces/separators.
    CONSTRAINT configurations_key_characters
        CHECK (key !~ '[\x01-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]'),
    CONSTRAINT configurations_data_type_known
        CHECK (data_type IN ('str', 'int', 'float', 'bool', 'json')),
    -- The value must be of its declared type; 'json' takes any JSON value.
    CONSTRAINT configurations_value_matches_type
        CHECK (CASE data_type
                   WHEN 'str'   THEN jsonb_typeof(value) = 'string'
                   WHEN 'int'   THEN jsonb_typeof(value) = 'number' AND scale(value::numeric) = 0
                   WHEN 'float' THEN jsonb_typeof(value) = 'number'
                   WHEN 'bool'  THEN jsonb_typeof(value) = 'boolean'
                   ELSE true
               END),
    CONSTRAINT configurations_version_positive
        CHECK (version >= 1),
    CONSTRAINT configurations_updated_by_present
        CHECK (btrim(updated_by) <> '')
);

COMMENT ON TABLE amira_config.configurations IS
    'Live configuration of AMIRA services; read and written through amira-data-access.';
