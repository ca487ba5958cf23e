-- Content-addressed storage: identical bytes are kept once. A blob is one object in the bucket,
-- referenced by any number of package_files rows (their object_key); refcount counts them.
-- Triggers keep the count, so every writer (this release's gateways and the previous one's,
-- during a rolling upgrade) counts the same way: inserting a file row references its object
-- (a blob row is made for a new object), deleting one drops a reference, and the last one
-- queues the object for deletion in the same transaction.
CREATE TABLE IF NOT EXISTS blobs (
    id         bigserial PRIMARY KEY,
    object_key text NOT NULL UNIQUE,
    sha256     text NOT NULL,
    size       bigint NOT NULL,
    refcount   integer NOT NULL CHECK (refcount >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS blobs_content_idx ON blobs (sha256, size);

-- Every object already stored becomes a blob with its rows as references.
INSERT INTO blobs (object_key, sha256, size, refcount)
SELECT object_key, min(file_sha256), min(size), count(*) FROM package_files GROUP BY object_key
ON CONFLICT (object_key) DO NOTHING;

-- Several rows may now point at one object.
DROP INDEX IF EXISTS package_files_object_key_key;
CREATE INDEX IF NOT EXISTS package_files_object_key_idx ON package_files (object_key);

CREATE OR REPLACE FUNCTION reference_blob() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO blobs (object_key, sha256, size, refcount)
    VALUES (NEW.object_key, NEW.file_sha256, NEW.size, 1)
    ON CONFLICT (object_key) DO UPDATE SET refcount = blobs.refcount + 1;
    RETURN NEW;
END;
$$;
CREATE OR REPLACE TRIGGER package_files_reference_blob
    AFTER INSERT ON package_files FOR EACH ROW EXECUTE FUNCTION reference_blob();

-- Replaces 0001's: the object goes only with its last reference.
CREATE OR REPLACE FUNCTION queue_object_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    remaining integer;
BEGIN
    UPDATE blobs SET refcount = refcount - 1 WHERE object_key = OLD.object_key
    RETURNING refcount INTO remaining;
    IF remaining IS NULL OR remaining <= 0 THEN
        DELETE FROM blobs WHERE object_key = OLD.object_key;
        INSERT INTO object_deletions (object_key) VALUES (OLD.object_key);
    END IF;
    RETURN OLD;
END;
$$;
