//! Numbers to text and back, without core's float formatting and parsing code.
//!
//! `format!("{x:.3}")` and `x.to_string()` link core's float formatting (Grisu with a Dragon4
//! fallback, and their tables), and `str::parse::<f64>` its float parsing (with a table of
//! powers of five); the wasm is smaller without them (`client-wasm/README.md`). What the page
//! needs is narrow: a fixed number of decimals ([`fixed`], pure Rust, tested natively against
//! `format!`), the shortest digits of a number ([`shortest`], JavaScript's), and whether a
//! string is a number at all ([`is_float`], tested natively against `str::parse`).

/// `x` with `decimals` digits after the point: the same text as `format!("{x:.decimals$}")`
/// (the exact value rounded half to even, `-` for every negative number and `-0.0`, `NaN`,
/// `inf`, `-inf`).
pub fn fixed(x: f64, decimals: usize) -> String {
    assert!(decimals <= MAX_DECIMALS, "at most {MAX_DECIMALS} decimals");
    if x.is_nan() {
        return "NaN".to_owned();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x.is_infinite() {
        return format!("{sign}inf");
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    // |x| = mantissa · 2^exponent, exactly.
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    let scale = 10_u128.pow(decimals as u32);
    let digits = if exponent >= 0 {
        // A whole number: its digits, then `decimals` zeros.
        let mut digits = whole_digits(mantissa, exponent as u32);
        digits.extend(std::iter::repeat_n(b'0', decimals));
        digits
    } else {
        // mantissa · 10^decimals < 2^53 · 10^9 < 2^83: exact in a u128.
        let scaled = u128::from(mantissa) * scale;
        let shift = exponent.unsigned_abs();
        let rounded = if shift >= 128 {
            0 // below 2^-44, far less than half a unit of the last decimal
        } else {
            let (quotient, rest) = (scaled >> shift, scaled & ((1 << shift) - 1));
            let half = 1_u128 << (shift - 1);
            if rest > half || (rest == half && quotient % 2 == 1) {
                quotient + 1
            } else {
                quotient
            }
        };
        rounded.to_string().into_bytes()
    };
    // At least one digit before the point.
    let mut digits = digits;
    if digits.len() <= decimals {
        let pad = decimals + 1 - digits.len();
        digits.splice(0..0, std::iter::repeat_n(b'0', pad));
    }
    let point = digits.len() - decimals;
    let mut text = String::with_capacity(sign.len() + digits.len() + 1);
    text.push_str(sign);
    // The digits are ASCII.
    text.extend(digits[..point].iter().map(|&b| char::from(b)));
    if decimals > 0 {
        text.push('.');
        text.extend(digits[point..].iter().map(|&b| char::from(b)));
    }
    text
}

/// The most decimals [`fixed`] writes (its arithmetic is exact up to there).
pub const MAX_DECIMALS: usize = 9;

/// The decimal digits of `mantissa · 2^exponent`.
fn whole_digits(mantissa: u64, exponent: u32) -> Vec<u8> {
    if exponent < 64 {
        return (u128::from(mantissa) << exponent).to_string().into_bytes();
    }
    // Past 2^117: base 10^9 limbs, least significant first, doubled `exponent` times.
    const BASE: u64 = 1_000_000_000;
    let mut limbs = vec![
        mantissa % BASE,
        mantissa / BASE % BASE,
        mantissa / BASE / BASE,
    ];
    for _ in 0..exponent {
        let mut carry = 0;
        for limb in &mut limbs {
            let doubled = *limb * 2 + carry;
            *limb = doubled % BASE;
            carry = doubled / BASE;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut digits = limbs.last().map_or(0, |&top| top).to_string().into_bytes();
    for limb in limbs.iter().rev().skip(1) {
        let part = limb.to_string();
        digits.extend(std::iter::repeat_n(b'0', 9 - part.len()));
        digits.extend(part.bytes());
    }
    digits
}

/// `x` as `x.to_string()` writes it: the shortest digits that read back as `x`, never with an
/// exponent (`NaN`, `inf`, `-inf`, `-0`).
///
/// In the browser the digits come from JavaScript's `Number.prototype.toString`, which picks
/// the shortest digits closest to `x`, as Rust does; its exponent form (`1e+21`, `1.5e-7`) and
/// `-0` (`0`) are rewritten here. One difference is left: when `x` lies exactly halfway
/// between two shortest candidates (a 17th significant digit, such as `1658206780088562.25`),
/// JavaScript takes the even one and Rust's Grisu may take the other; both read back as `x`
/// (`tests/browser.rs`, `shortest_is_to_string`). Natively (the unit tests) it is
/// `x.to_string()`.
pub fn shortest(x: f64) -> String {
    #[cfg(target_arch = "wasm32")]
    {
        if x == 0.0 && x.is_sign_negative() {
            return "-0".to_owned();
        }
        if x.is_infinite() {
            return if x < 0.0 { "-inf" } else { "inf" }.to_owned();
        }
        let js: String = js_sys::Number::from(x)
            .to_string_with_radix(10)
            .map(String::from)
            .unwrap_or_default();
        without_exponent(&js)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        x.to_string()
    }
}

/// `text` as JavaScript writes a number (`-1.5e-7`, `1e+21`, `12.5`, `NaN`) with its exponent
/// written out: `-0.00000015`, `1000000000000000000000`, `12.5`, `NaN`.
pub fn without_exponent(text: &str) -> String {
    let Some((mantissa, exponent)) = text.split_once('e') else {
        return text.to_owned();
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return text.to_owned();
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(unsigned) => ("-", unsigned),
        None => ("", mantissa),
    };
    // The point stands after the first digit of the mantissa.
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let point = 1 + exponent;
    let mut out = String::from(sign);
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else if point as usize >= digits.len() {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    out
}

/// Whether `text` is a number to `str::parse::<f64>`: an optional sign, then `inf`,
/// `infinity` or `nan` in any case, or digits with at most one point (at least one digit) and
/// an optional exponent (`e` or `E`, an optional sign, at least one digit).
pub fn is_float(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if ["inf", "infinity", "nan"]
        .iter()
        .any(|word| unsigned.eq_ignore_ascii_case(word))
    {
        return true;
    }
    let (number, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole) && digits(fraction) && whole.len() + fraction.len() > 0;
    let exponent_ok = exponent.is_none_or(|exponent| {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !exponent.is_empty() && digits(exponent)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the test needs no crate.
    fn randoms(mut state: u64, count: usize) -> impl Iterator<Item = u64> {
        (0..count).map(move |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
    }

    fn same_as_format(x: f64) {
        for decimals in 0..=MAX_DECIMALS {
            assert_eq!(
                fixed(x, decimals),
                format!("{x:.decimals$}"),
                "{x:e} ({:#x}) with {decimals} decimals",
                x.to_bits()
            );
        }
    }

    #[test]
    fn fixed_is_format_with_a_precision() {
        let edges = [
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            -0.5,
            0.0625,
            1.0625,
            0.125,
            0.25,
            0.375,
            0.0005,
            -0.0001,
            9.995,
            9.9995,
            99.95,
            999.5,
            1_234.567_8,
            60_000.0,
            59_999.95,
            f64::MIN_POSITIVE,
            5e-324,
            f64::EPSILON,
            2f64.powi(52) + 0.5,
            2f64.powi(53),
            2f64.powi(63) + 2048.0,
            2f64.powi(64),
            2f64.powi(116),
            2f64.powi(117),
            2f64.powi(200) * 3.0,
            f64::MAX,
            -f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for x in edges {
            same_as_format(x);
        }
        // Durations as performance.now() gives them: multiples of 0.1 ms, of 5 µs, and any.
        for (n, bits) in randoms(0x9e37_79b9_7f4a_7c15, 20_000).enumerate() {
            let n = n as f64;
            same_as_format(n / 10.0);
            same_as_format(n * 0.005 + 0.000_5);
            same_as_format((bits >> 11) as f64 / (1_u64 << 53) as f64 * 100_000.0);
            // Any bit pattern at all (NaNs and infinities included).
            same_as_format(f64::from_bits(bits));
        }
        // Exact ties at every number of decimals: k + 1/2 units of the last place, where that
        // is a binary fraction.
        for k in 0..2_000_u32 {
            same_as_format(f64::from(k) + 0.5);
            same_as_format(f64::from(k) / 8.0 + 1.0 / 16.0);
            same_as_format(f64::from(k) / 1024.0 + 1.0 / 2048.0);
        }
    }

    #[test]
    fn exponents_are_written_out_as_rust_does() {
        for (js, x) in [
            ("1e+21", 1e21),
            ("1.2345e+22", 1.2345e22),
            ("-1.5e-7", -1.5e-7),
            ("1e-7", 1e-7),
            ("5e-324", 5e-324),
            ("1.7976931348623157e+308", f64::MAX),
            ("12.5", 12.5),
            ("-3", -3.0),
            ("NaN", f64::NAN),
        ] {
            assert_eq!(without_exponent(js), x.to_string(), "{js}");
        }
    }

    #[test]
    fn is_float_agrees_with_str_parse() {
        let cases = [
            "",
            "+",
            "-",
            ".",
            "+.",
            "1",
            "+1",
            "-1",
            "01",
            "1.",
            ".5",
            "1.5",
            "1.5.",
            "1..5",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "1e",
            "1e+",
            "e5",
            ".e5",
            "1.e5",
            ".5e1",
            "1e5.5",
            "1e5e5",
            "inf",
            "-inf",
            "+Infinity",
            "INF",
            "infinit",
            "infinityy",
            "nan",
            "NaN",
            "-nan",
            "nana",
            "0x10",
            "1_000",
            " 1",
            "1 ",
            "1,5",
            "١",
            "3.0 probes",
            "+-1",
            "--1",
            "1e--5",
            "99999999999999999999999999",
            "1e400",
            "1e-400",
        ];
        for case in cases {
            assert_eq!(
                is_float(case),
                case.parse::<f64>().is_ok(),
                "{case:?}: is_float {}",
                is_float(case)
            );
        }
        // Every string of up to four characters from the grammar's alphabet.
        let alphabet = ['0', '9', '.', 'e', 'E', '+', '-', 'i', 'n', 'x', ' '];
        let mut strings = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = strings
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            for case in &longer {
                assert_eq!(is_float(case), case.parse::<f64>().is_ok(), "{case:?}");
            }
            strings = longer;
        }
    }
}
