//! The few DER elements factory-ca writes by hand (X.690): what rcgen and the `der` crate are
//! not asked to write, such as the CRL extensions rcgen lacks and the public keys and
//! signatures a PKCS#11 token hands over raw. Single-byte tags, definite minimal lengths.

/// One element: `tag`, the minimal definite length of `content`, `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// An INTEGER of an unsigned big-endian value: leading zeros stripped, one zero byte put back
/// when the high bit is set (X.690 section 8.3); zero (or nothing) is one zero byte.
pub(crate) fn unsigned_integer(value: &[u8]) -> Vec<u8> {
    let digits = match value.iter().position(|b| *b != 0) {
        Some(start) => &value[start..],
        None => &[][..],
    };
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    tlv(0x02, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_positive() {
        let cases: [(&[u8], &[u8]); 7] = [
            (&[], &[0x02, 0x01, 0x00]),
            (&[0x00], &[0x02, 0x01, 0x00]),
            (&[0x00, 0x00, 0x01], &[0x02, 0x01, 0x01]),
            (&[0x00, 0x7f], &[0x02, 0x01, 0x7f]),
            (&[0x80], &[0x02, 0x02, 0x00, 0x80]),
            (&0x80u64.to_be_bytes(), &[0x02, 0x02, 0x00, 0x80]),
            (
                &1_764_000_000u64.to_be_bytes(),
                &[0x02, 0x04, 0x69, 0x24, 0x81, 0x00],
            ),
        ];
        for (value, der) in cases {
            assert_eq!(unsigned_integer(value), der, "{value:02x?}");
        }
    }

    #[test]
    fn lengths_are_minimal() {
        assert_eq!(tlv(0x04, &[0; 0x7f])[..2], [0x04, 0x7f]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x30, &[0; 300])[..4], [0x30, 0x82, 0x01, 0x2c]);
    }
}
