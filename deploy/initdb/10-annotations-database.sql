-- Run once by the postgres image on a fresh volume: the annotation store gets its own database next
-- to Dagster's (same server, same user), so its tables never mix with Dagster's schema.
CREATE DATABASE gbifdl_annotations;
