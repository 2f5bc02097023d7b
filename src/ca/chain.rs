//! The certificates above a CA: checked to lead, signature by signature, from the CA
//! certificate up to a self-signed root, and ordered that way. A device presents its
//! certificate, the issuing CA, then each intermediate up to (not including) the root its
//! verifier trusts.

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::authority::verify_with_ca;
use super::error::CaError;
use super::import::check_ca_extensions;
use super::to_pem;

/// More certificates than any real hierarchy has; bounds the path walk.
const MAX_CHAIN: usize = 8;

/// The certificates of a PEM text (other blocks ignored).
fn certificates_der(text: &str, what: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| CaError::Rejected(format!("{what} cannot be decoded as PEM: {e}")))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect())
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|_| CaError::Rejected(format!("{what} is not valid DER X.509")))
}

/// Self-issued and its signature verifies with its own key.
fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == cert.subject().as_raw() && verify_with_ca(cert, cert).is_ok()
}

fn path_len(cert: &X509Certificate<'_>) -> Option<u32> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => bc.path_len_constraint,
            _ => None,
        })
}

/// Checks `chain_pem` as the chain above the CA certificate `ca_der` and returns it ordered
/// from the CA's issuer up to and including a self-signed root (PEM). The chain may be given
/// in any order and may repeat the CA certificate itself; every certificate in it must be on
/// the path. Each issuer must be a CA (CA:TRUE, keyCertSign) valid at `now` whose
/// pathLenConstraint allows the CAs below it.
pub fn verify_chain(
    ca_der: &[u8],
    chain_pem: &str,
    now: OffsetDateTime,
) -> Result<String, CaError> {
    let ca = parse(ca_der, "the CA certificate")?;
    let mut rest: Vec<Vec<u8>> = certificates_der(chain_pem, "the chain")?
        .into_iter()
        .filter(|der| der.as_slice() != ca_der)
        .collect();
    rest.dedup();
    if is_self_signed(&ca) {
        return if rest.is_empty() {
            Ok(String::new())
        } else {
            Err(CaError::Rejected(
                "the CA certificate is a self-signed root: it takes no chain; import it without \
                 one"
                .into(),
            ))
        };
    }
    if rest.is_empty() {
        return Err(CaError::Rejected(
            "the chain holds no certificate above the CA; give the CA's issuer and each \
             certificate above it up to a self-signed root (PEM)"
                .into(),
        ));
    }
    if rest.len() > MAX_CHAIN {
        return Err(CaError::Rejected(format!(
            "the chain holds {} certificates; at most {MAX_CHAIN} are accepted",
            rest.len()
        )));
    }
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut current = ca_der.to_vec();
    loop {
        let below = parse(&current, "a chain certificate")?;
        let found = rest.iter().position(|der| {
            parse(der, "a chain certificate").is_ok_and(|issuer| {
                issuer.subject().as_raw() == below.issuer().as_raw()
                    && verify_with_ca(&issuer, &below).is_ok()
            })
        });
        let Some(index) = found else {
            return Err(CaError::Rejected(format!(
                "the chain does not verify: no certificate in it issued and signed \"{}\" (issuer \
                 \"{}\"); give each certificate up to a self-signed root",
                below.subject(),
                below.issuer()
            )));
        };
        let issuer_der = rest.remove(index);
        let issuer = parse(&issuer_der, "a chain certificate")?;
        check_ca_extensions(&issuer).map_err(|e| {
            CaError::Rejected(format!(
                "chain certificate \"{}\" cannot issue CA certificates: {e}",
                issuer.subject()
            ))
        })?;
        let (not_before, not_after) = (
            issuer.validity().not_before.to_datetime(),
            issuer.validity().not_after.to_datetime(),
        );
        if now < not_before || now >= not_after {
            return Err(CaError::Rejected(format!(
                "chain certificate \"{}\" is not valid now (valid from {not_before} to \
                 {not_after})",
                issuer.subject()
            )));
        }
        // CAs below this issuer: the CA itself and the intermediates between them.
        let below_count = path.len() as u32 + 1;
        if let Some(limit) = path_len(&issuer)
            && limit < below_count
        {
            return Err(CaError::Rejected(format!(
                "chain certificate \"{}\" has pathLenConstraint {limit}: it allows fewer CAs \
                 below it than this chain has ({below_count})",
                issuer.subject()
            )));
        }
        let root = is_self_signed(&issuer);
        drop(issuer);
        path.push(issuer_der.clone());
        if root {
            break;
        }
        current = issuer_der;
    }
    if !rest.is_empty() {
        return Err(CaError::Rejected(format!(
            "the chain holds {} certificate(s) not on the path from the CA to its root; give \
             only the CA's issuers",
            rest.len()
        )));
    }
    Ok(path.iter().map(|der| to_pem("CERTIFICATE", der)).collect())
}

/// The certificates of a stored chain (as [`verify_chain`] returns it) that a device presents
/// after the issuing CA: every one but the self-signed root, in order.
pub fn intermediates_pem(chain_pem: &str) -> String {
    let Ok(certs) = certificates_der(chain_pem, "the chain") else {
        return String::new();
    };
    certs
        .iter()
        .filter(|der| X509Certificate::from_der(der).is_ok_and(|(_, c)| !is_self_signed(&c)))
        .map(|der| to_pem("CERTIFICATE", der))
        .collect()
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
