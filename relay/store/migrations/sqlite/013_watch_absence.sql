-- A silence watch's evidence (relay.silences): since when its alert has been absent from an Alertmanager that had
-- been up for the grace period already (NULL: seen firing, or no such absence yet). Only an absence that lasts the
-- whole grace period is taken as a resolve: a restarted Alertmanager answers [] until Prometheus sends again.
ALTER TABLE silence_watches ADD COLUMN absent_since REAL;
