//! ISO 3166-1 alpha-2: the officially assigned codes (249, as maintained by the ISO 3166
//! Maintenance Agency). Reserved and user-assigned codes (`XX`, `AA`, `ZZ`, `EU`, `UK`) are not
//! countries and are refused.

const ASSIGNED: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ \
EC EE EG EH ER ES ET \
FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT \
JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ \
LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ \
OM \
PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA \
RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ \
UA UG UM US UY UZ \
VA VC VE VG VI VN VU \
WF WS \
YE YT \
ZA ZM ZW";

/// True for an assigned ISO 3166-1 alpha-2 code written in upper case.
pub fn is_assigned_alpha2(code: &str) -> bool {
    let code = code.as_bytes();
    if code.len() != 2 || !code.iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    // `ASSIGNED` is sorted, one code every 3 bytes: a binary search, not a scan of all 249 (a
    // scan was ~1 % of the service's instructions per certificate).
    let table = ASSIGNED.as_bytes();
    let (mut low, mut high) = (0, table.len().div_ceil(3));
    while low < high {
        let mid = (low + high) / 2;
        match table[3 * mid..3 * mid + 2].cmp(code) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_249_assigned_codes_once_each_in_order() {
        let codes: Vec<&str> = ASSIGNED.split(' ').collect();
        assert_eq!(codes.len(), 249);
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, codes);
    }

    #[test]
    fn the_search_finds_every_listed_code_and_nothing_else() {
        let listed: Vec<&str> = ASSIGNED.split(' ').collect();
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let code = String::from_utf8(vec![a, b]).unwrap();
                assert_eq!(
                    is_assigned_alpha2(&code),
                    listed.contains(&code.as_str()),
                    "{code}"
                );
            }
        }
    }

    #[test]
    fn accepts_assigned_upper_case_codes_only() {
        for ok in ["JP", "US", "DE", "GB", "TW", "SS", "BQ"] {
            assert!(is_assigned_alpha2(ok), "{ok}");
        }
        for bad in ["XX", "jp", "Jp", "JPN", "", "UK", "EU", "ZZ", "J"] {
            assert!(!is_assigned_alpha2(bad), "{bad}");
        }
    }
}
