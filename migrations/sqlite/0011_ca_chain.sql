-- The certificates above a CA up to and including its self-signed root (PEM, ordered from the
-- CA's issuer); empty for a root and for a CA imported without its chain.
ALTER TABLE certificate_authorities ADD COLUMN chain_pem TEXT NOT NULL DEFAULT '';
