-- Keys a person can tell apart, and values every reader can decode.
--
-- amira_data_access.codec refuses these before anything is sent; the same rules
-- are constraints here, so raw SQL cannot store what the library refuses.
--
-- VALUES. Two limits, each a function a DBA can redefine (CREATE OR REPLACE
-- FUNCTION ... AS $$ SELECT n $$; the next statement uses it). They bound every
-- client: a client's own limits (ValueLimits, by default the same 1 MiB and 64)
-- can be stricter, and whatever goes beyond these is refused here.
-- * Size: the value's JSON text as PostgreSQL prints it, octet_length(value::text)
--   (UTF-8 bytes, a space after each ',' and ':'), which the library counts the
--   same way. Printing 1 MB of jsonb costs about 8 ms here; small values, nothing.
-- * Depth: arrays and objects inside each other (1 is 0 deep, [1] and {} are 1,
--   {"a": [1]} is 2). strict $.**{N} selects what sits N levels below the top
--   (level 0), walking at most N levels down (measured on PostgreSQL 15 with
--   values 2000 to 10000 deep: a millisecond or two, no stack trouble); an array
--   or object there means more than N levels. Strict: lax mode would unwrap the
--   arrays the filter is given.
--
-- KEYS. In Unicode NFC (so 'e' + U+0301 cannot sit beside U+00E9), and the key
-- grammar of README "Values and types": ASCII printable characters but the space,
-- and the letters of ONE script, each script a list of code point ranges (the
-- same ranges as codec.KEY_SCRIPTS, which tests/unit/test_codec.py compares with
-- this file). Everything invisible (format and bidi controls, variation
-- selectors, fillers), combining marks, symbols, and letters of two scripts in
-- one key (a Cyrillic 'o' in 'amira.chat.tone') are outside it. Needs a UTF8
-- database, as the \u escapes of 0001 already did.
--
-- NOT VALID: rows already stored are not checked (nor scanned under a lock);
-- every row inserted or updated from now on is. The library reads an old row it
-- cannot decode as an UnreadableValueError naming the key, and can delete an old
-- key the grammar refuses. Once none is left, VALIDATE each constraint (it takes
-- a SHARE UPDATE EXCLUSIVE lock: writes go on). The rows a constraint refuses are
-- those WHERE NOT (its expression), e.g.:
--   SELECT key FROM amira_config.configurations
--    WHERE octet_length(value::text) > amira_config.max_value_bytes();
--   ALTER TABLE amira_config.configurations VALIDATE CONSTRAINT configurations_value_size;

CREATE FUNCTION amira_config.max_value_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1048576 $$;

COMMENT ON FUNCTION amira_config.max_value_bytes() IS
    'Largest value stored, in bytes of its JSON text as printed (octet_length(value::text)).';

CREATE FUNCTION amira_config.max_value_depth() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 64 $$;

COMMENT ON FUNCTION amira_config.max_value_depth() IS
    'Deepest value stored, in arrays and objects inside each other ([1] is 1 deep).';

ALTER TABLE amira_config.configurations
    ADD CONSTRAINT configurations_value_size
        CHECK (octet_length(value::text) <= amira_config.max_value_bytes()) NOT VALID,
    ADD CONSTRAINT configurations_value_depth
        CHECK (NOT jsonb_path_exists(
            value,
            ('strict $.**{' || amira_config.max_value_depth()::text
             || '} ? (@.type() == "array" || @.type() == "object")')::jsonpath
        )) NOT VALID,
    ADD CONSTRAINT configurations_key_nfc
        CHECK (key IS NFC NORMALIZED) NOT VALID,
    ADD CONSTRAINT configurations_key_grammar CHECK (
           key ~ '^[\x21-\x7e\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01bf\u01c4-\u024f\u1e00-\u1eff]+$'  -- Latin
        OR key ~ '^[\x21-\x40\x5b-\x60\x7b-\x7e\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03ce]+$'  -- Greek
        OR key ~ '^[\x21-\x40\x5b-\x60\x7b-\x7e\u0400-\u0481\u048a-\u052f]+$'  -- Cyrillic
        OR key ~ '^[\x21-\x40\x5b-\x60\x7b-\x7e\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff]+$'  -- Han/Kana
        OR key ~ '^[\x21-\x40\x5b-\x60\x7b-\x7e\uac00-\ud7a3]+$'  -- Hangul
    ) NOT VALID;
