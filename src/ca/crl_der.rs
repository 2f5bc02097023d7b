//! The two CRL extensions rcgen cannot write, added to a CRL rcgen has signed: the CRL's
//! tbsCertList gets the extra extensions appended to its crlExtensions and is signed again with
//! the same key and algorithm (RFC 5280 section 5.1). Only DER that rcgen produced is read
//! here, so single-byte tags and definite lengths are all there is.
//!
//! - deltaCRLIndicator (RFC 5280 section 5.2.4, critical): this CRL is a delta CRL on top of
//!   the complete CRL numbered BaseCRLNumber.
//! - freshestCRL (RFC 5280 section 5.2.6, not critical): where the delta CRLs of this complete
//!   CRL are published.

use rcgen::SigningKey;

use super::authority::CaError;
use super::der_encode::{tlv, unsigned_integer};

const SEQUENCE: u8 = 0x30;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
/// `[0]` constructed: crlExtensions in tbsCertList, distributionPoint and fullName in a
/// DistributionPoint.
const CONTEXT_0: u8 = 0xa0;
/// `[6]` primitive: uniformResourceIdentifier in a GeneralName.
const URI: u8 = 0x86;

/// 2.5.29.27 id-ce-deltaCRLIndicator
const DELTA_CRL_INDICATOR: [u8; 3] = [0x55, 0x1d, 0x1b];
/// 2.5.29.46 id-ce-freshestCRL
const FRESHEST_CRL: [u8; 3] = [0x55, 0x1d, 0x2e];

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut content = tlv(OID, oid);
    if critical {
        content.extend(tlv(BOOLEAN, &[0xff]));
    }
    content.extend(tlv(OCTET_STRING, value));
    tlv(SEQUENCE, &content)
}

/// deltaCRLIndicator with BaseCRLNumber `base`.
pub(super) fn delta_crl_indicator(base: u64) -> Vec<u8> {
    extension(
        &DELTA_CRL_INDICATOR,
        true,
        &unsigned_integer(&base.to_be_bytes()),
    )
}

/// freshestCRL with one distribution point, the full name `uri`.
pub(super) fn freshest_crl(uri: &str) -> Vec<u8> {
    let general_names = tlv(CONTEXT_0, &tlv(URI, uri.as_bytes()));
    let distribution_point = tlv(SEQUENCE, &tlv(CONTEXT_0, &general_names));
    extension(&FRESHEST_CRL, false, &tlv(SEQUENCE, &distribution_point))
}

/// One DER element: its tag, all its bytes, and its content.
#[derive(Clone, Copy)]
struct Element<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// The first element of `der`, and what follows it.
fn next(der: &[u8]) -> Result<(Element<'_>, &[u8]), CaError> {
    let bad = || CaError::Crypto("the CRL's DER cannot be read back".into());
    let (&tag, rest) = der.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    if der.len() < header + len {
        return Err(bad());
    }
    let element = Element {
        tag,
        whole: &der[..header + len],
        content: &der[header..header + len],
    };
    Ok((element, &der[header + len..]))
}

/// All elements of a constructed element's content.
fn elements(mut content: &[u8]) -> Result<Vec<Element<'_>>, CaError> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (element, rest) = next(content)?;
        out.push(element);
        content = rest;
    }
    Ok(out)
}

/// `crl` (DER, as rcgen signed it) with `extra` appended to its crlExtensions, signed again by
/// `key` (the key that signed it, so the signatureAlgorithm stays right).
pub(super) fn with_extensions(
    crl: &[u8],
    extra: &[Vec<u8>],
    key: &impl SigningKey,
) -> Result<Vec<u8>, CaError> {
    let bad = || CaError::Crypto("the CRL rcgen signed has an unexpected shape".into());
    let (certificate_list, _) = next(crl)?;
    let parts = elements(certificate_list.content)?;
    let [tbs, signature_algorithm, signature] = parts.as_slice() else {
        return Err(bad());
    };
    if (tbs.tag, signature_algorithm.tag, signature.tag) != (SEQUENCE, SEQUENCE, BIT_STRING) {
        return Err(bad());
    }
    let mut fields = elements(tbs.content)?;
    // rcgen always writes crlExtensions (the CRL number is mandatory there), last.
    let wrapped = fields
        .pop()
        .filter(|f| f.tag == CONTEXT_0)
        .ok_or_else(bad)?;
    let (existing, rest) = next(wrapped.content)?;
    if existing.tag != SEQUENCE || !rest.is_empty() {
        return Err(bad());
    }
    let mut extensions = existing.content.to_vec();
    for ext in extra {
        extensions.extend_from_slice(ext);
    }
    let mut tbs_content: Vec<u8> = fields.iter().flat_map(|f| f.whole.to_vec()).collect();
    tbs_content.extend(tlv(CONTEXT_0, &tlv(SEQUENCE, &extensions)));
    let tbs = tlv(SEQUENCE, &tbs_content);
    let signature = key.sign(&tbs).map_err(|e| CaError::Crypto(e.to_string()))?;
    let mut bits = vec![0u8];
    bits.extend(signature);
    let mut content = tbs;
    content.extend_from_slice(signature_algorithm.whole);
    content.extend(tlv(BIT_STRING, &bits));
    Ok(tlv(SEQUENCE, &content))
}
