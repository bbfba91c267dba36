//! The export of every result (`#export-json`, `#export-markdown`, `#export-download`), and
//! the shared link: `#share-link` out, [`SharedProbe`] in.

use wasm_bindgen::JsValue;
use web_sys::{Blob, BlobPropertyBag, Location};

use super::page::Page;
use crate::number::is_float;
use crate::results::{runs_of, Export};

/// A probe shared as a link: `?url=ws://…&runs=5`. It fills in the URL and the runs and says
/// so in `#shared-notice`; nothing is sent until `#run-custom` is clicked.
pub(super) struct SharedProbe {
    pub(super) url: String,
    /// Clamped to 1..=[`MAX_RUNS`](crate::results::MAX_RUNS); 1 when absent or not a number.
    pub(super) runs: u32,
}

impl SharedProbe {
    /// What `#shared-notice` says: the host it will connect to, and how often.
    pub(super) fn notice(&self) -> String {
        let probes = if self.runs == 1 {
            "1 probe".to_owned()
        } else {
            format!("{} probes", self.runs)
        };
        format!(
            "This link filled in {probes} of {}. Nothing has been sent: check the URL, then \
             click Probe URL to run it.",
            self.url
        )
    }

    /// The probe the page's own URL asks for, if any.
    pub(super) fn from_location(location: &Location) -> Result<Option<SharedProbe>, JsValue> {
        let params = web_sys::UrlSearchParams::new_with_str(&location.search()?)?;
        let Some(url) = params.get("url").map(|url| url.trim().to_owned()) else {
            return Ok(None);
        };
        if url.is_empty() {
            return Ok(None);
        }
        let runs = params
            .get("runs")
            .map(|runs| runs.trim().to_owned())
            .filter(|runs| is_float(runs))
            .map_or(1, |runs| runs_of(float_value(&runs)));
        Ok(Some(SharedProbe { url, runs }))
    }
}

/// `text`, which [`is_float`] accepts, as the number `str::parse::<f64>` makes of it: the
/// words by hand, the digits by the browser's `Number.parseFloat`, which reads the whole of
/// such a text and rounds it correctly, as Rust does.
fn float_value(text: &str) -> f64 {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    match unsigned.as_bytes().first() {
        Some(b'i' | b'I') if text.starts_with('-') => f64::NEG_INFINITY,
        Some(b'i' | b'I') => f64::INFINITY,
        Some(b'n' | b'N') => f64::NAN,
        _ => js_sys::Number::parse_float(text),
    }
}

/// Which export button was pressed.
#[derive(Clone, Copy, Debug)]
pub(super) enum ExportFormat {
    Json,
    Markdown,
}

impl Page {
    /// Fills `#export-output` with every result in `format`, and points `#export-download`
    /// at the same text as a file.
    pub(super) fn export(&self, format: ExportFormat) -> Result<(), JsValue> {
        let export = Export::new(
            self.location.href()?,
            js_sys::Date::new_0()
                .to_iso_string()
                .as_string()
                .unwrap_or_default(),
            self.browser.clone(),
            self.exported_runs(),
        );
        let (text, mime, file) = match format {
            ExportFormat::Json => {
                // Through the browser's own JSON, so no JSON writer is compiled into the wasm.
                let value = crate::js::export(&export);
                let text = js_sys::JSON::stringify_with_replacer_and_space(
                    &value,
                    &JsValue::NULL,
                    &JsValue::from(2),
                )?;
                (
                    String::from(text),
                    "application/json",
                    "wsclose-results.json",
                )
            }
            ExportFormat::Markdown => (export.markdown(), "text/markdown", "wsclose-results.md"),
        };
        self.export_output.set_value(&text);
        self.export_output.remove_attribute("hidden")?;
        self.export_output.set_attribute("data-format", mime)?;

        let options = BlobPropertyBag::new();
        options.set_type(mime);
        let parts = js_sys::Array::of1(&JsValue::from_str(&text));
        let blob = Blob::new_with_str_sequence_and_options(&parts, &options)?;
        let url = web_sys::Url::create_object_url_with_blob(&blob)?;
        if let Some(old) = self.download_url.borrow_mut().replace(url.clone()) {
            web_sys::Url::revoke_object_url(&old)?;
        }
        let link = &self.export_download;
        link.set_attribute("href", &url)?;
        link.set_attribute("download", file)?;
        link.set_text_content(Some(&format!("Download {file}")));
        link.remove_attribute("hidden")
    }

    /// Points `#share-link` at this page with `?url=` (and `&runs=`) of the URL field.
    pub(super) fn update_share_link(&self) -> Result<(), JsValue> {
        let link = web_sys::Url::new(&self.location.href()?)?;
        link.set_hash("");
        link.set_search("");
        let params = link.search_params();
        params.set("url", self.url_input.value().trim());
        let runs = runs_of(self.runs_input.value_as_number());
        if runs > 1 {
            params.set("runs", &runs.to_string());
        }
        self.share_link.set_attribute("href", &link.href())
    }
}
