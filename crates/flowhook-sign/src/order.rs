//! Java's `String.CASE_INSENSITIVE_ORDER`, the key order of the Yida signature.
//!
//! Yida sorts parameter keys with the JDK comparator, so any other order (byte order, plain
//! lower-case order) yields a different signing string as soon as keys mix case and punctuation:
//! Java puts `a_b` before `aB` because it compares the *lower-case of the upper-case* of each
//! UTF-16 code unit, and `_` (0x5F) is below `b` (0x62).
//!
//! The JDK algorithm, for each position `i` up to the shorter length:
//! `c1 != c2` → compare `toUpperCase`; still different → compare `toLowerCase` of those and return
//! the difference; if every position is equal the shorter string sorts first. It works on UTF-16
//! code units with the *simple* (one unit to one unit) case mappings; surrogate halves map to
//! themselves. This module reproduces exactly that and must stay free of locale or allocation
//! surprises: it is called for every signed request.

use std::cmp::Ordering;

/// Compares two keys as Java's `String.CASE_INSENSITIVE_ORDER` does.
///
/// Two keys that differ only in case compare `Equal`, which is why the signer refuses such a
/// pair instead of choosing an order the JDK would not choose.
///
/// ```
/// use std::cmp::Ordering;
/// use flowhook_sign::order::java_case_insensitive_cmp as cmp;
/// assert_eq!(cmp("a_b", "aB"), Ordering::Less);      // not byte order: 'B' < '_'
/// assert_eq!(cmp("alpha", "Beta"), Ordering::Less);  // not byte order: 'B' < 'a'
/// assert_eq!(cmp("taskId", "TASKID"), Ordering::Equal);
/// assert_eq!(cmp("task", "taskId"), Ordering::Less); // a prefix sorts first
/// ```
pub fn java_case_insensitive_cmp(a: &str, b: &str) -> Ordering {
    let mut left = a.encode_utf16();
    let mut right = b.encode_utf16();
    loop {
        match (left.next(), right.next()) {
            (Some(x), Some(y)) => {
                if x == y {
                    continue;
                }
                let (ux, uy) = (to_upper_unit(x), to_upper_unit(y));
                if ux == uy {
                    continue;
                }
                let (lx, ly) = (to_lower_unit(ux), to_lower_unit(uy));
                if lx != ly {
                    return lx.cmp(&ly);
                }
            }
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
        }
    }
}

/// `Character.toUpperCase(char)`: the simple upper-case mapping of one UTF-16 code unit.
///
/// Rust's `char::to_uppercase` is the *full* mapping (`ß` → `SS`); where that is more than one
/// character, or leaves the BMP, Java's one-unit mapping keeps the unit unchanged.
pub fn to_upper_unit(unit: u16) -> u16 {
    map_unit(unit, |c| {
        let mut it = c.to_uppercase();
        match (it.next(), it.next()) {
            (Some(u), None) => Some(u),
            _ => None,
        }
    })
}

/// `Character.toLowerCase(char)`: the simple lower-case mapping of one UTF-16 code unit.
pub fn to_lower_unit(unit: u16) -> u16 {
    map_unit(unit, |c| {
        // U+0130 (İ) is the one character whose full lower-case mapping is two characters
        // ("i̇"); its simple mapping, the one Java uses here, is plain 'i'.
        if c == '\u{130}' {
            return Some('i');
        }
        let mut it = c.to_lowercase();
        match (it.next(), it.next()) {
            (Some(l), None) => Some(l),
            _ => None,
        }
    })
}

fn map_unit(unit: u16, f: impl Fn(char) -> Option<char>) -> u16 {
    // A surrogate half is not a char: Java maps it to itself.
    let Some(c) = char::from_u32(u32::from(unit)) else {
        return unit;
    };
    match f(c) {
        Some(m) if (m as u32) <= 0xFFFF => m as u32 as u16,
        _ => unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A line-by-line transliteration of the JDK's `CaseInsensitiveComparator.compare`
    /// (indices, `char` arithmetic, `return c1 - c2` and `return n1 - n2`), kept deliberately
    /// naive so it can serve as the reference for the iterator-based implementation.
    fn jdk_reference(s1: &str, s2: &str) -> i32 {
        let s1: Vec<u16> = s1.encode_utf16().collect();
        let s2: Vec<u16> = s2.encode_utf16().collect();
        let n1 = s1.len() as i32;
        let n2 = s2.len() as i32;
        let min = n1.min(n2) as usize;
        for i in 0..min {
            let mut c1 = s1[i];
            let mut c2 = s2[i];
            if c1 != c2 {
                c1 = to_upper_unit(c1);
                c2 = to_upper_unit(c2);
                if c1 != c2 {
                    c1 = to_lower_unit(c1);
                    c2 = to_lower_unit(c2);
                    if c1 != c2 {
                        return i32::from(c1) - i32::from(c2);
                    }
                }
            }
        }
        n1 - n2
    }

    #[test]
    fn known_orders() {
        let mut keys = vec!["Zeta", "alpha", "Beta", "a_b", "aB", "_lead"];
        keys.sort_by(|a, b| java_case_insensitive_cmp(a, b));
        assert_eq!(keys, ["_lead", "a_b", "aB", "alpha", "Beta", "Zeta"]);
        // Digits and punctuation below letters, brackets above upper-case letters.
        assert_eq!(java_case_insensitive_cmp("a1", "aa"), Ordering::Less);
        assert_eq!(java_case_insensitive_cmp("a[", "aZ"), Ordering::Less); // '[' 0x5B < 'z' 0x7A
        assert_eq!(java_case_insensitive_cmp("", "a"), Ordering::Less);
    }

    #[test]
    fn simple_case_mappings_match_java() {
        // ß has no one-character upper case: Java leaves it alone.
        assert_eq!(to_upper_unit('ß' as u16), 'ß' as u16);
        // µ (micro) upper-cases to Greek capital MU, whose lower case is Greek small mu.
        assert_eq!(to_lower_unit(to_upper_unit('µ' as u16)), 'μ' as u16);
        assert_eq!(java_case_insensitive_cmp("µ", "μ"), Ordering::Equal);
        assert_eq!(to_lower_unit('\u{130}' as u16), 'i' as u16);
        // Surrogate halves map to themselves.
        assert_eq!(to_upper_unit(0xD83D), 0xD83D);
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_0-9\\[\\]`^]{0,6}",
            "[a-zA-Zàâéßµİıſ_ÄÖÜ]{0,5}",
            any::<String>().prop_map(|s| s.chars().take(6).collect()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_the_jdk_algorithm(a in key(), b in key()) {
            prop_assert_eq!(java_case_insensitive_cmp(&a, &b), jdk_reference(&a, &b).cmp(&0));
        }

        #[test]
        fn is_a_total_order(a in key(), b in key(), c in key()) {
            let ab = java_case_insensitive_cmp(&a, &b);
            prop_assert_eq!(ab.reverse(), java_case_insensitive_cmp(&b, &a));
            prop_assert_eq!(java_case_insensitive_cmp(&a, &a), Ordering::Equal);
            let bc = java_case_insensitive_cmp(&b, &c);
            if ab != Ordering::Greater && bc != Ordering::Greater {
                prop_assert_ne!(java_case_insensitive_cmp(&a, &c), Ordering::Greater);
            }
        }
    }
}
