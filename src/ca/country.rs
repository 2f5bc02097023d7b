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
    code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && ASSIGNED.split(' ').any(|c| c == code)
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
    fn accepts_assigned_upper_case_codes_only() {
        for ok in ["JP", "US", "DE", "GB", "TW", "SS", "BQ"] {
            assert!(is_assigned_alpha2(ok), "{ok}");
        }
        for bad in ["XX", "jp", "Jp", "JPN", "", "UK", "EU", "ZZ", "J"] {
            assert!(!is_assigned_alpha2(bad), "{bad}");
        }
    }
}
