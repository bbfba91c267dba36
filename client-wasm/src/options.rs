//! `measureClose`'s options object, read key by key.
//!
//! It used to go through serde-wasm-bindgen, whose error messages format floats with core's
//! float formatting; read here instead, with the same rules and the same messages, the wasm
//! carries no float formatting at all (`client-wasm/README.md`); a float in a message is
//! written by [`shortest`], which can differ from Rust's text only in an exact tie of a 17th
//! significant digit. The rules are those of
//! serde-wasm-bindgen 0.6 for a `#[serde(default)]` struct: only the five keys are looked up; a
//! key that is absent keeps its default, one that is present but `undefined` counts as given;
//! an integer is a safe integer, not negative, within its type; `closeTimeoutMs` may be
//! `null` or `undefined` (none). The first bad key, in the order of [`CloseOptions::KEYS`],
//! makes the error.

use wasm_bindgen::{JsCast, JsValue};

use crate::number::shortest;
use crate::probe::CloseOptions;

/// `value`, an options object, as [`CloseOptions`]; the error is serde's message (`invalid type:
/// string "x", expected u16`), or what the object threw when a key was read.
pub fn close_options(value: &JsValue) -> Result<CloseOptions, Bad> {
    if !value.is_object() {
        return Err(Bad::Message(invalid_type(value, "struct CloseOptions")));
    }
    let mut options = CloseOptions::default();
    let [code, reason, wait_for_messages, setup_timeout_ms, close_timeout_ms] = CloseOptions::KEYS;
    if let Some(code) = key(value, code)? {
        options.code = unsigned(&code, "u16", u16::MAX.into())? as u16;
    }
    if let Some(reason) = key(value, reason)? {
        options.reason = reason
            .as_string()
            .ok_or_else(|| Bad::Message(invalid_type(&reason, "a string")))?;
    }
    if let Some(count) = key(value, wait_for_messages)? {
        options.wait_for_messages = unsigned(&count, "u32", u32::MAX.into())? as u32;
    }
    if let Some(ms) = key(value, setup_timeout_ms)? {
        options.setup_timeout_ms = unsigned(&ms, "u32", u32::MAX.into())? as u32;
    }
    if let Some(ms) = key(value, close_timeout_ms)? {
        options.close_timeout_ms = if is_nullish(&ms) {
            None
        } else {
            Some(unsigned(&ms, "u32", u32::MAX.into())? as u32)
        };
    }
    Ok(options)
}

/// Why an options object was refused.
pub enum Bad {
    /// The message, as serde words it.
    Message(String),
    /// What reading a key threw (a getter, a proxy).
    Thrown(JsValue),
}

/// The value of `name` in `object`, or `None` when the key is absent (`undefined` and not
/// `in` the object).
fn key(object: &JsValue, name: &str) -> Result<Option<JsValue>, Bad> {
    let name = JsValue::from_str(name);
    let value = js_sys::Reflect::get(object, &name).map_err(Bad::Thrown)?;
    if value.is_undefined() && !js_sys::Reflect::has(object, &name).map_err(Bad::Thrown)? {
        return Ok(None);
    }
    Ok(Some(value))
}

/// `value` as an integer of at most `max`, named `expected` in the error.
fn unsigned(value: &JsValue, expected: &str, max: u64) -> Result<u64, Bad> {
    if js_sys::Number::is_safe_integer(value) {
        // A safe integer is a number, and exact as an i64.
        let integer = value.as_f64().unwrap_or_default() as i64;
        if let Ok(integer) = u64::try_from(integer) {
            if integer <= max {
                return Ok(integer);
            }
            return Err(Bad::Message(format!(
                "invalid value: integer `{integer}`, expected {expected}"
            )));
        }
    }
    Err(Bad::Message(invalid_type(value, expected)))
}

fn is_nullish(value: &JsValue) -> bool {
    value.loose_eq(&JsValue::NULL)
}

/// serde's `invalid type` message for `value` where `expected` was expected, with the value
/// described as serde-wasm-bindgen describes it.
fn invalid_type(value: &JsValue, expected: &str) -> String {
    let unexpected = if is_nullish(value) {
        "unit value".to_owned()
    } else if let Some(flag) = value.as_bool() {
        format!("boolean `{flag}`")
    } else if let Some(number) = value.as_f64() {
        // serde writes a float with a decimal point: `1.0`, `-1.0`, `1.5`.
        let mut text = shortest(number);
        if number.is_finite() && !text.contains('.') {
            text.push_str(".0");
        }
        format!("floating point `{text}`")
    } else if let Some(text) = value.as_string() {
        format!("string {text:?}")
    } else if value.is_instance_of::<js_sys::Uint8Array>()
        || value.is_instance_of::<js_sys::ArrayBuffer>()
    {
        "byte array".to_owned()
    } else {
        format!("{value:?}")
    };
    format!("invalid type: {unexpected}, expected {expected}")
}
