-- The certificates above a CA up to and including its self-signed root (PEM, ordered from the
-- CA's issuer); empty for a root and for a CA imported without its chain.
ALTER TABLE certificate_authorities ADD COLUMN chain_pem TEXT NOT NULL DEFAULT '';

-- A CA whose key is made (`ca create --csr-out`) and whose certificate an offline root has yet
-- to sign: it issues nothing until `ca install` moves it to certificate_authorities.
CREATE TABLE pending_certificate_authorities (
    id            TEXT PRIMARY KEY,
    subject       TEXT NOT NULL,
    key_algorithm TEXT NOT NULL,
    csr_pem       TEXT NOT NULL,
    key_file      TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
