//! Results as plain JavaScript objects, built key by key.
//!
//! `measureClose` resolves with a [`CloseReport`] and the page's JSON export is an [`Export`]
//! given to `JSON.stringify`. They used to go through serde-wasm-bindgen; built here instead,
//! the wasm carries neither its serializer nor the hash map it caches key names in
//! (`client-wasm/README.md`). The objects are the ones serde-wasm-bindgen made, key for key and
//! in the same order: camelCase keys, numbers as numbers, and for the export (its
//! `json_compatible` mode) a missing value as `null` and the summary's statistics flattened
//! into each URL's object.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::JsValue;

use crate::probe::CloseReport;
use crate::results::{BrowserInfo, Engine, Export, ExportedRun, UrlSummary};

/// `{ elapsedMs, code, reason, wasClean, messagesReceived }`.
pub fn report(report: &CloseReport) -> JsValue {
    object(&[
        ("elapsedMs", report.elapsed_ms.into()),
        ("code", report.close.code.into()),
        ("reason", report.close.reason.as_str().into()),
        ("wasClean", report.close.was_clean.into()),
        ("messagesReceived", report.messages_received.into()),
    ])
}

/// `{ page, generatedAt, browser, runs, summary }`, as the JSON export has it.
pub fn export(export: &Export) -> JsValue {
    object(&[
        ("page", export.page.as_str().into()),
        ("generatedAt", export.generated_at.as_str().into()),
        ("browser", browser(&export.browser)),
        ("runs", array(export.runs.iter().map(run))),
        ("summary", array(export.summary.iter().map(url_summary))),
    ])
}

fn browser(browser: &BrowserInfo) -> JsValue {
    let engine = match browser.engine {
        Engine::Chromium => "chromium",
        Engine::Gecko => "gecko",
        Engine::WebKit => "webkit",
        Engine::Unknown => "unknown",
    };
    object(&[
        ("name", browser.name.as_str().into()),
        ("version", browser.version.as_str().into()),
        ("engine", engine.into()),
        ("userAgent", browser.user_agent.as_str().into()),
    ])
}

fn run(run: &ExportedRun) -> JsValue {
    object(&[
        ("number", count(run.number)),
        ("url", run.url.as_str().into()),
        ("state", run.state.into()),
        ("elapsedMs", or_null(run.elapsed_ms)),
        ("code", or_null(run.code)),
        ("reason", or_null(run.reason.as_deref())),
        ("wasClean", or_null(run.was_clean)),
        ("openMs", or_null(run.open_ms)),
        ("protocol", or_null(run.protocol.as_deref())),
        ("extensions", or_null(run.extensions.as_deref())),
        ("error", or_null(run.error.as_deref())),
    ])
}

fn url_summary(url: &UrlSummary) -> JsValue {
    let stats = &url.stats;
    object(&[
        ("url", url.url.as_str().into()),
        ("count", count(stats.count)),
        ("medianMs", stats.median_ms.into()),
        ("p95Ms", stats.p95_ms.into()),
        ("minMs", stats.min_ms.into()),
        ("maxMs", stats.max_ms.into()),
        ("codes", array(url.codes.iter().map(|&code| code.into()))),
        ("clean", count(url.clean)),
    ])
}

/// A plain object with `entries`, in their order.
fn object(entries: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in entries {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&object, &JsValue::from_str(key), value);
    }
    object.into()
}

fn array(items: impl Iterator<Item = JsValue>) -> JsValue {
    items.collect::<Array>().into()
}

/// A count as a JavaScript number (the counts of one page are far below 2^53).
fn count(n: usize) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn or_null<T: Into<JsValue>>(value: Option<T>) -> JsValue {
    value.map_or(JsValue::NULL, Into::into)
}
