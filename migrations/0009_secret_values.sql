-- Secrets: data_type 'secret', whose value is an envelope sealed by the library.
--
-- amira_data_access.secrets encrypts a secret in the application (AES-256-GCM, a
-- data key per value wrapped by a key-encryption key the database never sees)
-- before it is sent. What this table, its history, the change notifications and
-- every backup hold is the envelope, a versioned JSON object of base64 fields:
--   {"v": 1, "kid": "<key id>", "dek": "<wrapped data key>", "nonce": "…", "ct": "…"}
-- The constraint below is that shape, so raw SQL cannot store a plaintext under
-- data_type 'secret' (the patterns are those of secrets.py: a test compares them).
-- It does not make a value secret that was written with another data_type.
--
-- NOT VALID, as in 0007: no row can be a secret yet (the old
-- configurations_data_type_known refused the type), so nothing needs scanning,
-- and no lock is held for a scan. The new configurations_data_type_known is the
-- old list plus 'secret'; the rows already stored were checked by the old one.

-- The shape of an envelope, once: the CHECK below and the trigger after it use it.
CREATE FUNCTION amira_config.is_sealed_secret(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_typeof(value) = 'object'
       -- exactly these five members, no others
       AND value ?& ARRAY['v', 'kid', 'dek', 'nonce', 'ct']
       AND value - ARRAY['v', 'kid', 'dek', 'nonce', 'ct'] = '{}'::jsonb
       -- the version as text: 1.0 is a jsonb number equal to 1, but not version 1
       AND jsonb_typeof(value -> 'v') = 'number' AND value ->> 'v' = '1'
       AND jsonb_typeof(value -> 'kid') = 'string'
       AND value ->> 'kid' ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
       -- nonce (12 bytes) + the data key (32) + the tag (16): 60 bytes in base64
       AND jsonb_typeof(value -> 'dek') = 'string'
       AND value ->> 'dek' ~ '^[A-Za-z0-9+/]{80}$'
       AND jsonb_typeof(value -> 'nonce') = 'string'
       AND value ->> 'nonce' ~ '^[A-Za-z0-9+/]{16}$'
       -- padded base64 of the ciphertext and its 16-byte tag: 24 characters or more
       AND jsonb_typeof(value -> 'ct') = 'string'
       AND char_length(value ->> 'ct') >= 24
       AND value ->> 'ct' ~ '^([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
$$;

COMMENT ON FUNCTION amira_config.is_sealed_secret(jsonb) IS
    'Whether a value is the envelope amira_data_access.secrets seals (data_type secret).';

-- The DROP is replaced in the same statement by a superset (squawk's ban-drop-constraint).
ALTER TABLE amira_config.configurations
    -- squawk-ignore ban-drop-constraint
    DROP CONSTRAINT configurations_data_type_known,
    ADD CONSTRAINT configurations_data_type_known
        CHECK (data_type IN ('str', 'int', 'float', 'bool', 'json', 'secret')) NOT VALID,
    ADD CONSTRAINT configurations_secret_sealed
        CHECK (data_type <> 'secret' OR amira_config.is_sealed_secret(value)) NOT VALID;

COMMENT ON CONSTRAINT configurations_secret_sealed ON amira_config.configurations IS
    'A secret''s value is the envelope amira_data_access.secrets seals, never a plaintext.';

-- The same refusal, before the row is formed: a CHECK violation's DETAIL ("Failing row
-- contains …", in the client's error and the server log) would show the value, which
-- here may be a plaintext sent by mistake (a str written to a secret's key without
-- data_type keeps the stored type). Same SQLSTATE and constraint name as the CHECK,
-- no DETAIL. The CHECK stays: it is the rule, this trigger only words the refusal.
CREATE FUNCTION amira_config.configurations_refuse_unsealed_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.data_type = 'secret' AND NOT amira_config.is_sealed_secret(NEW.value) THEN
        RAISE EXCEPTION 'new row for relation "configurations" violates check constraint "configurations_secret_sealed"'
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'configurations_secret_sealed',
                  SCHEMA = 'amira_config',
                  TABLE = 'configurations',
                  HINT = 'A secret''s value is the envelope amira_data_access seals; the row is not shown, as it may hold a plaintext.';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER configurations_refuse_unsealed_secret
    BEFORE INSERT OR UPDATE ON amira_config.configurations
    FOR EACH ROW EXECUTE FUNCTION amira_config.configurations_refuse_unsealed_secret();
